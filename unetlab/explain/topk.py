"""Top-9 input patches per unit (Zeiler & Fergus, 2014): which image regions excite a channel most.

One streaming pass over a data set keeps, for every chosen channel of a feature key, the ``k`` highest activations
seen so far (``RunningTopK``: each batch's candidates are merged with the kept ones by a stable sort, so memory is
``O(channels * (k + batch))`` and never holds all activations). A channel's candidate in an image is its maximum over
all spatial positions in that image (one patch per image, the classic choice, so the nine patches come from nine
different images); ties go to the earlier image. Each winner is cropped from its input image by the exact receptive
field of that unit (``unit_field``), padded where the field leaves the image, and drawn with the ground-truth
boundary on top.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.colors
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor

from unetlab.explain.erf import eval_mode
from unetlab.explain.receptive_field import receptive_fields, unit_field
from unetlab.models.unet import UNet

OUTSIDE_IMAGE = "#8fa7bf"  # padding where a field leaves the image
BOUNDARY_COLOURS = ("#39ff14", "#ff9f1c", "#00e5ff", "#ff3ea5", "#ffe600")


def key_channels(net: UNet, key: str) -> int:
    """Number of channels of feature ``key``."""
    if key not in net.feature_keys:
        raise ValueError(f"unknown feature key {key!r}; this depth-{net.depth} U-Net has {', '.join(net.feature_keys)}")
    if key == "logits":
        return net.num_classes
    return net.widths[int(key.removeprefix("enc").removeprefix("dec"))]


def forward_to(net: UNet, x: Tensor, keys: Iterable[str]) -> dict[str, Tensor]:
    """The feature maps ``keys`` of ``x``; runs only the encoder when every key is an encoder key."""
    keys = list(keys)
    if all(key.startswith("enc") for key in keys):
        net.check_input(x)
        last_level = max(int(key.removeprefix("enc")) for key in keys)
        features = {}
        for level, block in enumerate(net.encoder[: last_level + 1]):
            x = block(x)
            features[f"enc{level}"] = x
    else:
        features = net.features(x)
    return {key: features[key] for key in keys}


class RunningTopK:
    """The ``k`` largest values per channel seen so far, with the image index and unit position of each.

    ``update(values, image_index, position)``: values (C, n), image_index (n,), position (C, n) flat unit index.
    Merging is a stable descending sort of kept + new candidates, so ties keep the earlier one.
    """

    def __init__(self, num_channels: int, k: int = 9):
        self.k = k
        self.values = torch.empty(num_channels, 0)
        self.image_index = torch.empty(num_channels, 0, dtype=torch.long)
        self.position = torch.empty(num_channels, 0, dtype=torch.long)

    def update(self, values: Tensor, image_index: Tensor, position: Tensor) -> None:
        values = torch.cat([self.values, values.float().cpu()], dim=1)
        image_index = torch.cat([self.image_index, image_index.cpu().expand(len(values), -1)], dim=1)
        position = torch.cat([self.position, position.cpu()], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = values.gather(1, order)
        self.image_index = image_index.gather(1, order)
        self.position = position.gather(1, order)


@dataclass
class TopUnits:
    """The top-k units of some channels of one feature key over a data set.

    values (C, k); image_index (C, k) into the data set; unit (C, k, 2) as (y, x) in the feature map.
    """

    key: str
    channels: list[int]
    values: Tensor
    image_index: Tensor
    unit: Tensor
    timing: dict[str, float] = field(default_factory=dict)


def top_units(
    net: UNet,
    loader: Iterable[tuple[Tensor, Tensor]],
    channels: Mapping[str, Sequence[int]],
    k: int = 9,
    progress: bool = False,
) -> dict[str, TopUnits]:
    """One pass over ``loader`` (not shuffled: image i of the data set is the i-th image it yields) keeping the
    ``k`` units with the highest activation per chosen channel of each key, one candidate per image.

    ``channels`` maps a feature key to the channel indices to follow. ``timing`` of each result holds the seconds
    spent in forward passes (``forward_s``, shared by all keys) and in the top-k bookkeeping (``topk_s``).
    """
    for key, chosen in channels.items():
        check_channels(net, key, chosen)
    keepers = {key: RunningTopK(len(chosen), k) for key, chosen in channels.items()}
    index_by_key = {key: torch.as_tensor(list(chosen), dtype=torch.long) for key, chosen in channels.items()}
    widths: dict[str, int] = {}
    seen, forward_s, topk_s = 0, 0.0, 0.0
    device = next(net.parameters()).device
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"top-{k} {', '.join(channels)}", unit="batch")
    with eval_mode(net), torch.inference_mode():
        for images, *_ in loader:
            start = time.perf_counter()
            features = forward_to(net, images.to(device), channels)
            middle = time.perf_counter()
            batch_index = torch.arange(seen, seen + len(images))
            for key, feature in features.items():
                chosen = feature[:, index_by_key[key].to(feature.device)]  # (B, C, h, w)
                widths[key] = chosen.shape[-1]
                best, position = chosen.flatten(2).max(dim=2)  # (B, C): spatial max per image and channel
                keepers[key].update(best.T, batch_index, position.T)
            seen += len(images)
            forward_s += middle - start
            topk_s += time.perf_counter() - middle
    out = {}
    for key, keeper in keepers.items():
        unit = torch.stack([keeper.position // widths[key], keeper.position % widths[key]], dim=-1)
        timing = {"forward_s": forward_s, "topk_s": topk_s, "images": seen}
        out[key] = TopUnits(key, list(channels[key]), keeper.values, keeper.image_index, unit, timing)
    return out


def check_channels(net: UNet, key: str, channels: Sequence[int]) -> None:
    """Raise a clear error for channel indices the key does not have."""
    available = key_channels(net, key)
    bad = [channel for channel in channels if not 0 <= int(channel) < available]
    if bad or not channels:
        raise ValueError(
            f"{key} has {available} channels (0..{available - 1}), but channel(s) {bad or 'none'} were asked for; "
            f"use viz.channels <= {available} or a list of indices"
        )


def crop(tensor: Tensor, box: tuple[int, int, int, int], fill: float) -> Tensor:
    """``tensor[..., y0:y1, x0:x1]`` with ``fill`` where the half-open box leaves the (H, W) of ``tensor``."""
    y0, y1, x0, x1 = box
    height, width = tensor.shape[-2:]
    out = torch.full((*tensor.shape[:-2], y1 - y0, x1 - x0), fill, dtype=tensor.dtype)
    top, bottom, left, right = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    if top < bottom and left < right:
        out[..., top - y0 : bottom - y0, left - x0 : right - x0] = tensor[..., top:bottom, left:right]
    return out


@dataclass
class Patch:
    """A unit's receptive field cut from its image: image (C, h, w) NaN outside the image, mask (h, w) with -1
    outside, box (y0, y1, x0, x1) in image coordinates, and the activation value."""

    image: Tensor
    mask: Tensor
    box: tuple[int, int, int, int]
    value: float
    image_index: int


def top_patches(net: UNet, dataset, top: TopUnits) -> list[list[Patch]]:
    """Crop every top unit's receptive field from its image and mask: one list of k patches per channel."""
    rows = []
    for row in range(len(top.channels)):
        patches = []
        for col in range(top.values.shape[1]):
            index = int(top.image_index[row, col])
            image, mask = dataset[index][:2]
            y, x = (int(v) for v in top.unit[row, col])
            box = unit_field(net, top.key, y, x)
            patches.append(
                Patch(
                    crop(image.float(), box, float("nan")), crop(mask, box, -1), box, float(top.values[row, col]), index
                )
            )
        rows.append(patches)
    return rows


def _to_rgb(images: list[Tensor]) -> list[np.ndarray]:
    """(C, h, w) patches -> (h, w, 3) in [0, 1], one scale for all (the data range), padding in OUTSIDE_IMAGE."""
    finite = torch.cat([image[torch.isfinite(image)] for image in images])
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    pad = torch.tensor(matplotlib.colors.to_rgb(OUTSIDE_IMAGE)).view(3, 1, 1)
    out = []
    for image in images:
        rgb = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
        rgb = ((rgb - low) / max(high - low, 1e-12)).clamp(0, 1)
        rgb = torch.where(torch.isfinite(rgb), rgb, pad)
        out.append(rgb.permute(1, 2, 0).numpy())
    return out


def save_grid(net: UNet, dataset, top: TopUnits, path: Path, num_classes: int | None = None) -> Path:
    """A grid PNG: one row per channel, its k patches (the unit's exact field, padded outside the image) with the
    ground-truth boundary drawn on each. Patches sit on a common px scale: each panel spans the key's largest field."""
    rf = receptive_fields(net)[top.key]
    rows = top_patches(net, dataset, top)
    images = _to_rgb([patch.image for patches in rows for patch in patches])
    k = len(rows[0]) if rows else 0
    # Fixed margins in inches (a constrained layout of many panels costs seconds).
    cell, gap_w, gap_h, left, right, head, bottom = 1.2, 0.1, 0.3, 0.35, 0.1, 0.7, 0.1
    width, height = left + right + k * cell + (k - 1) * gap_w, head + bottom + len(rows) * (cell + gap_h) - gap_h
    figure = Figure(figsize=(width, height))
    grid = dict(left=left / width, right=1 - right / width, top=1 - head / height, bottom=bottom / height)
    axes = figure.subplots(
        len(rows), k, squeeze=False, gridspec_kw={**grid, "wspace": gap_w / cell, "hspace": gap_h / cell}
    )
    num_classes = num_classes or net.num_classes
    for r, patches in enumerate(rows):
        for c, patch in enumerate(patches):
            ax = axes[r][c]
            y0, y1, x0, x1 = patch.box
            ax.imshow(images[r * k + c], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5), interpolation="nearest")
            _draw_boundaries(ax, patch, num_classes)
            cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
            ax.set_xlim(cx - rf.size / 2, cx + rf.size / 2)
            ax.set_ylim(cy + rf.size / 2, cy - rf.size / 2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{patch.value:.3g} (img {patch.image_index})", fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(f"channel {top.channels[r]}", fontsize=8)
    figure.suptitle(
        f"{top.key}: top-{k} patches per channel, each the unit's receptive field ({rf.size} px side, "
        f"units {rf.jump:g} px apart)\nlines: ground-truth boundary; blue-grey: outside the image; "
        "title: activation (image index)",
        fontsize=8,
        y=1 - 0.1 / height,
        va="top",
    )
    figure.savefig(path, dpi=100)
    return path


def _draw_boundaries(ax, patch: Patch, num_classes: int) -> None:
    """Pixel edges between each foreground class and the rest, inside the image (edges with the padding are
    left out: the image border is not an object boundary)."""
    y0, _, x0, _ = patch.box
    mask = patch.mask.numpy()
    for label in range(1, num_classes):
        inside = mask == label
        if not inside.any():
            continue
        in_image = mask >= 0
        segments = []
        # Horizontal edges: between rows r and r + 1; vertical edges: between columns c and c + 1.
        rows, cols = np.nonzero((inside[:-1] != inside[1:]) & in_image[:-1] & in_image[1:])
        segments += [
            ((x0 + c - 0.5, y0 + r + 0.5), (x0 + c + 0.5, y0 + r + 0.5)) for r, c in zip(rows, cols, strict=True)
        ]
        rows, cols = np.nonzero((inside[:, :-1] != inside[:, 1:]) & in_image[:, :-1] & in_image[:, 1:])
        segments += [
            ((x0 + c + 0.5, y0 + r - 0.5), (x0 + c + 0.5, y0 + r + 0.5)) for r, c in zip(rows, cols, strict=True)
        ]
        colour = BOUNDARY_COLOURS[(label - 1) % len(BOUNDARY_COLOURS)]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=0.9))
