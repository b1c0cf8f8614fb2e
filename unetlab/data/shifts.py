"""Test-time domain shifts of an image: the same scene, seen through other acquisition conditions.

A shift is written ``kind:strength`` (``data.test_shift``, ``eval.shifts``), e.g. ``noise:0.1`` or ``blur:1.5``:

- ``noise:s``: extra Gaussian pixel noise of standard deviation ``s`` (image intensities; objects differ from the
  background by ~0.45, the built-in noise is 0.05);
- ``speckle:s``: multiplicative noise, ``image * (1 + s * n)`` with ``n`` standard normal per pixel (the harder
  out-of-domain test of Kamath et al. 2023);
- ``contrast:s``: contrast lowered by the fraction ``s`` in [0, 1): ``mean + (image - mean) * (1 - s)``;
- ``blur:s``: Gaussian blur of standard deviation ``s`` px (``scipy.ndimage.gaussian_filter``, reflected border);
- ``texture:s``: extra background texture of amplitude ``s``: three plane waves of 6..16 cycles per image, finer
  than the built-in texture's 1..6 (drawn by the shapes data set, which knows the background:
  ``unetlab.data.shapes.plane_waves``).

The shift draws from its own random stream, so the scene (objects, mask, the built-in texture and noise) is the same
with and without it: only the shift differs. ``docs/data.md`` has the definitions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

SHIFT_KINDS = ("noise", "speckle", "contrast", "blur", "texture")


def parse_shift(shift: str | None) -> tuple[str, float] | None:
    """``"blur:1.5"`` -> ``("blur", 1.5)``; None or ``"none"`` -> None. ValueError naming the allowed forms."""
    if shift is None or shift == "none":
        return None
    kind, _, value = str(shift).partition(":")
    try:
        strength = float(value)
    except ValueError:
        strength = math.nan
    if kind not in SHIFT_KINDS or not math.isfinite(strength) or strength < 0:
        raise ValueError(
            f"shift {shift!r}: expected kind:strength with kind one of {', '.join(SHIFT_KINDS)} and a strength >= 0, "
            "e.g. noise:0.1, speckle:0.3, contrast:0.5, blur:1.5, texture:0.2"
        )
    if kind == "contrast" and strength >= 1:
        raise ValueError(f"shift {shift!r}: a contrast shift lowers the contrast by a fraction in [0, 1)")
    return kind, strength


def shift_name(shift: str | None) -> str:
    """The canonical name of a shift, ``noise:0.1`` (``%g``), or ``none``: for tables and sources."""
    parsed = parse_shift(shift)
    return "none" if parsed is None else f"{parsed[0]}:{parsed[1]:g}"


def apply_shift(image: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W) float under the shift ``kind`` (noise, speckle, contrast or blur) of ``strength``; a new
    array."""
    if kind == "noise":
        return image + strength * rng.standard_normal(image.shape)
    if kind == "speckle":
        return image * (1.0 + strength * rng.standard_normal(image.shape))
    if kind == "contrast":
        mean = image.mean()
        return mean + (image - mean) * (1.0 - strength)
    if kind == "blur":
        return ndimage.gaussian_filter(image, sigma=strength, mode="reflect") if strength > 0 else image.copy()
    raise ValueError(f"apply_shift: {kind!r} is drawn by the data set itself (texture) or unknown")
