"""The explorer's ``fields`` and ``units`` data of one drawn network (``docs/explorer.md``), written by ``unetlab-viz``
as ``viz/explore.json`` and read by the report stage.

- ``fields``: per feature key, every path's exact field of every unit row and column (``path_fields``), and effective
  receptive fields (mean |gradient| of the unit's channel sum over some images, as ``erf.py``) of a grid of units;
  a click on a pixel shows the sampled unit nearest to it, its theoretical boxes and its ERF together.
- ``units``: per drawn key and channel, its top-k patches (as the top-9 grids), their test-image indices, where they
  lie, their activations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from unetlab.conventions import level_of
from unetlab.encode import encode_labels, encode_png, to_uint8_rgb
from unetlab.erf import eval_mode, gradient_mass
from unetlab.explain.topk import TopUnits, top_patches
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import path_fields, receptive_fields


def grid_units(height: int, width: int, per_side: int) -> list[tuple[int, int]]:
    """Up to ``per_side`` x ``per_side`` unit positions spread evenly over an (height, width) feature map, centred
    in their cells (all units when the map is smaller)."""
    rows = sorted({int((i + 0.5) * height / per_side) for i in range(min(per_side, height))})
    cols = sorted({int((j + 0.5) * width / per_side) for j in range(min(per_side, width))})
    return [(u, v) for u in rows for v in cols]


def erf_maps(net: UNetLike, images: Tensor, key: str, units: Sequence[tuple[int, int]]) -> Tensor:
    """(U, H, W) mean over ``images`` (N, C, H, W) of |d (channel sum of ``key`` at unit u) / d input|, input channels
    summed: one backward pass per unit, all images at once."""
    parameter = next(net.parameters())
    x = images.to(device=parameter.device, dtype=parameter.dtype).requires_grad_(True)
    out = torch.zeros(len(units), *images.shape[-2:], dtype=torch.float64)
    with eval_mode(net):
        feature = protocol.features(net, x)[key]
        for i, unit in enumerate(units):
            out[i] = gradient_mass(feature, x, unit, retain_graph=i < len(units) - 1) / len(images)
    return out


def field_data(net: UNetLike, images: Tensor, per_side: int = 6, keys: Sequence[str] | None = None) -> dict:
    """The explorer's ``fields``: for every key (default all but the logits) its level, largest field size, jump,
    paths (rows and columns of every unit, inclusive, unclipped) and ERF heat maps (0..255, each scaled to its own
    maximum) of a ``per_side`` x ``per_side`` grid of units, over ``images`` (N, C, H, W)."""
    size = tuple(images.shape[-2:])
    fields = receptive_fields(net)
    out = {}
    for key in keys or [key for key in protocol.feature_keys(net) if key != "logits"]:
        level = level_of(key)
        units = grid_units(size[0] // 2**level, size[1] // 2**level, per_side)
        maps = erf_maps(net, images, key, units)
        peak = maps.flatten(1).amax(dim=1).clamp_min(1e-30).view(-1, 1, 1)
        heat = (maps / peak * 255).round().to(torch.uint8).numpy()
        out[key] = {
            "level": level,
            "size": fields[key].size,
            "jump": fields[key].jump,
            "paths": [
                {"name": name, "rows": [list(r) for r in rows], "cols": [list(c) for c in cols]}
                for name, (rows, cols) in path_fields(net, key, size).items()
            ],
            "erf": {"units": [list(unit) for unit in units], "maps": [encode_labels(m) for m in heat]},
        }
    return out


def unit_data(net: UNetLike, dataset, tops: dict[str, TopUnits]) -> dict:
    """The explorer's ``units``: per key of ``tops`` and channel, its patches (position of the source image in
    ``images``, its index in ``dataset``, half-open unclipped box, unit, activation, the crop as PNG with the padding in
    grey), and the source images they come from, on one brightness scale (that of the data set's first images)."""
    sample = torch.stack([dataset[i][0] for i in range(min(len(dataset), 16))]).float()
    low, high = float(sample.min()), float(sample.max())
    sources: dict[tuple[int, int | None], int] = {}  # (data set index, slice of a volume) -> position in "images"
    images: list[str] = []
    keys = {}
    for key, top in tops.items():
        channels = []
        for channel, patches in zip(top.channels, top_patches(net, dataset, top), strict=True):
            entries = []
            for rank, patch in enumerate(patches):
                source = (patch.image_index, patch.depth)
                if source not in sources:
                    sources[source] = len(images)
                    image = dataset[patch.image_index][0]
                    image = image if patch.depth is None else image[:, patch.depth]  # a volume: the patch's slice
                    images.append(encode_png(to_uint8_rgb(image, low, high)))
                crop = to_uint8_rgb(patch.image, low, high)
                crop[~np.isfinite(patch.image.numpy()).any(axis=0)] = 128  # outside the image: grey
                entries.append({
                    "image": sources[source],
                    "index": patch.image_index,  # the test image's index, as the top-9 PNG titles give it
                    "box": list(patch.box),
                    "unit": [int(v) for v in top.unit[top.channels.index(channel), rank]],
                    "activation": round(patch.value, 4),
                    "crop": encode_png(crop),
                })  # fmt: skip
            channels.append({"channel": int(channel), "patches": entries})
        keys[key] = {"channels": channels}
    return {"images": images, "keys": keys}
