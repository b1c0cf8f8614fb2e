"""Arrays as text for the self-contained HTML pages (the explorer): label maps as base64 bytes, images as base64 PNG."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def encode_labels(labels: np.ndarray | torch.Tensor) -> str:
    """An ``(H, W)`` map of class ids (0..254, 255 = ignore) or of 0..255 heat values -> base64 of its row-major bytes.

    Accepts a numpy array or a torch tensor of any integer or bool dtype whose values fit in uint8.
    """
    array = as_numpy(labels)
    if array.ndim != 2:
        raise ValueError(f"encode_labels needs an H x W map, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "biu":
            raise ValueError(f"encode_labels needs integer values 0..255 (255 = ignore), got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"encode_labels: values {array.min()}..{array.max()} do not fit in 0..255")
        array = array.astype(np.uint8)
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def encode_png(rgb: np.ndarray | torch.Tensor) -> str:
    """An ``(H, W, 3)`` uint8 RGB image (or ``(H, W)``, ``(H, W, 1)`` grey) -> base64 PNG without a ``data:`` prefix."""
    array = as_numpy(rgb)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"encode_png needs an H x W x 3 RGB image, got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 values 0..255, got dtype {array.dtype} (scale and cast it first)")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array), "RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_labels(text: str, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of ``encode_labels``: (H, W) uint8."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(shape)


def to_uint8_rgb(image, low: float | None = None, high: float | None = None) -> np.ndarray:
    """A (C, H, W) float image (as the data modules serve it) -> (H, W, 3) uint8, scaled from [low, high] (default:
    the image's own range); one channel is repeated, more than three are cut to the first three. NaN -> 0. A volume
    (C, D, H, W) -> (D, H, W, 3) likewise."""
    array = np.asarray(image, dtype=np.float64)
    array = array[:3] if array.shape[0] >= 3 else np.repeat(array[:1], 3, axis=0)
    finite = array[np.isfinite(array)]
    low = float(finite.min()) if low is None and finite.size else (0.0 if low is None else low)
    high = float(finite.max()) if high is None and finite.size else (1.0 if high is None else high)
    scaled = np.nan_to_num((array - low) / max(high - low, 1e-12), nan=0.0).clip(0, 1)
    return (np.moveaxis(scaled, 0, -1) * 255).round().astype(np.uint8)
