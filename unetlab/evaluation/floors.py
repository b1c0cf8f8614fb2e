"""The resolution floor (``docs/probes-and-floors.md``): the best a map at level ``i`` can do, read out bilinearly.

Ground truth area-averaged down by ``2**i``, bilinearly upsampled back, thresholded at 0.5 (for more than
two classes: the class with the largest upsampled fraction, which is the same rule for two classes).
A probe at level ``i`` cannot be expected to beat it; probe error minus floor is detail lost beyond resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_fractions(masks: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """One-hot label maps as float fractions: (N, H, W) int64 -> (N, K, H, W); ignored pixels are all zero."""
    valid = masks != ignore_index
    one_hot = F.one_hot(torch.where(valid, masks, 0), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * valid.unsqueeze(1)


def resolution_floor(masks: Tensor, level: int, num_classes: int, ignore_index: int = 255) -> Tensor:
    """The best label map a level-``level`` map allows: (N, H, W) int64 -> (N, H, W) int64.

    Level 0 returns the masks themselves (ignored pixels become background; metrics ignore them anyway).
    """
    fractions = class_fractions(masks, num_classes, ignore_index)
    if level > 0:
        factor = 2**level
        pooled = F.avg_pool2d(fractions, kernel_size=factor, stride=factor)  # (N, K, H/2**i, W/2**i)
        fractions = F.interpolate(pooled, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    if num_classes == 2:
        return (fractions[:, 1] > 0.5).long()
    return fractions.argmax(dim=1)
