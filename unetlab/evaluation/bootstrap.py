"""Percentile bootstrap intervals over test images (``docs/results-table.md``).

A run draws one set of resamples of its ``n`` test images (seeded) and uses it for every source, so the intervals
of two sources come from the same image draws and a difference between sources can be bootstrapped pairwise. A
statistic that is linear in the per-image values (a mean; a Shapley value, a fixed combination of means) is
bootstrapped through its whole computation by applying it to each resample's per-image values.
"""

from __future__ import annotations

import torch
from torch import Tensor

RESAMPLES = 1000
LEVEL = 0.95


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> Tensor:
    """``resamples`` draws of ``n`` image indices with replacement: (R, n) int64, a function of (n, resamples, seed)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(n, (resamples, n), generator=generator) if n else torch.zeros(resamples, 0).long()


def bootstrap_means(per_image: Tensor, indices: Tensor) -> Tensor:
    """Means of every resample: per_image (n, ...) with indices (R, n) -> (R, ...)."""
    return per_image[indices].mean(dim=1)


def percentile_interval(samples: Tensor, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap samples (R,), linearly interpolated percentiles (NaN if empty)."""
    samples = samples[~torch.isnan(samples)].double()
    if samples.numel() == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = torch.quantile(samples, torch.tensor([tail, 1 - tail], dtype=samples.dtype))
    return float(low), float(high)


def mean_interval(per_image: Tensor, indices: Tensor, level: float = LEVEL) -> tuple[float, float]:
    """Interval of the mean of ``per_image`` (n,) over the resamples ``indices`` (R, n)."""
    if per_image.numel() == 0:
        return float("nan"), float("nan")
    return percentile_interval(bootstrap_means(per_image.double(), indices), level)
