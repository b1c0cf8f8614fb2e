"""Test-time ablation of one skip tensor (``docs/ablations.md``): what ``UNet.ablate_skips`` applies.

``zero``: all zeros. ``mean``: each channel's spatial mean (statistics kept, location removed). ``lowpass:k``:
average-pooled by ``2**k`` and bilinearly upsampled (detail finer than ``2**k`` px removed). Volumes: the same
along every axis (``2**k`` voxel cubes, trilinear).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from unetlab.conventions import skips_to_str
from unetlab.models.protocol import SkipTransform, UNetLike


def parse_ablation_mode(mode: str) -> tuple[str, int]:
    """``"zero" | "mean" | "lowpass:k"`` -> (kind, k); k is 0 unless kind is lowpass."""
    if mode in ("zero", "mean"):
        return mode, 0
    if isinstance(mode, str) and mode.startswith("lowpass:"):
        try:
            k = int(mode.split(":", 1)[1])
        except ValueError:
            k = -1
        if k >= 1:
            return "lowpass", k
    raise ValueError(f"unknown skip ablation mode {mode!r}; allowed: zero, mean, lowpass:k with an integer k >= 1")


def ablate_skip(skip: Tensor, mode: str) -> Tensor:
    """Test-time ablation of one skip tensor (B, C, h, w) -> (B, C, h, w), or (B, C, d, h, w) likewise."""
    kind, k = parse_ablation_mode(mode)
    if kind == "zero":
        return torch.zeros_like(skip)
    spatial = tuple(range(2, skip.ndim))
    if kind == "mean":
        return skip.mean(dim=spatial, keepdim=True).expand_as(skip)
    size = skip.shape[2:]
    factor = 2**k
    if min(size) < factor:
        raise ValueError(f"lowpass:{k} pools by {factor} px but this skip is only {tuple(size)} px")
    pool, mode = (F.avg_pool2d, "bilinear") if len(size) == 2 else (F.avg_pool3d, "trilinear")
    pooled = pool(skip, kernel_size=factor, stride=factor)
    return F.interpolate(pooled, size=size, mode=mode, align_corners=False)


def ablation_transform(
    ablation: Mapping[int, str], cache: dict[tuple[int, str], Tensor] | None = None
) -> SkipTransform:
    """The skip transform of ``{level: mode}``: ablates those levels' skips and passes the others through.

    ``cache``: ablated skips by (level, mode), shared by the transforms of variants decoded from one encoder pass
    (``decode_variants``), so each is computed once; leave it out otherwise.
    """

    def transform(level: int, skip: Tensor) -> Tensor:
        if level not in ablation:
            return skip
        if cache is None:
            return ablate_skip(skip, ablation[level])
        key = (level, ablation[level])
        if key not in cache:
            cache[key] = ablate_skip(skip, ablation[level])
        return cache[key]

    return transform


def check_ablation(net: UNetLike, ablation: Mapping[int, str]) -> dict[int, str]:
    """``{level: mode}`` with int levels, checked against the model's skips and the allowed modes."""
    checked = {}
    for level, mode in ablation.items():
        level = int(level)
        if level not in net.skip_levels:
            kept = skips_to_str(net.skip_levels)
            raise ValueError(f"cannot ablate the skip at level {level}: this U-Net keeps skips at levels {kept}")
        parse_ablation_mode(mode)
        checked[level] = mode
    return checked
