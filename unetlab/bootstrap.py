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


def two_level_indices(seeds: int, images: int, resamples: int = RESAMPLES, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Draws of a two-level bootstrap over runs (seeds) that were all scored on the same test images: per resample,
    ``seeds`` seed indices with replacement (R, seeds) and ``images`` image indices with replacement (R, images),
    one image draw shared by every drawn seed (the images are crossed with the seeds, not nested in them).

    The image draws come first from the generator, so they are ``resample_indices(images, resamples, seed)``: with
    one seed, or with seeds whose values are identical, the two-level bootstrap is the image bootstrap.
    """
    generator = torch.Generator().manual_seed(seed)
    image_draws = (
        torch.randint(images, (resamples, images), generator=generator) if images else torch.zeros(resamples, 0).long()
    )
    seed_draws = torch.randint(seeds, (resamples, seeds), generator=generator)
    return seed_draws, image_draws


def draw_weights(draws: Tensor, n: int) -> Tensor:
    """(R, k) draws of indices below ``n`` -> (R, n) float64: how often each index was drawn, divided by k, so that
    ``weights @ values`` is the mean of the drawn values (a matrix product instead of a gather of R x k values)."""
    counts = torch.zeros(draws.shape[0], n, dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones(draws.shape, dtype=torch.float64))
    return counts / max(draws.shape[1], 1)


def two_level_means(values: Tensor, seed_draws: Tensor, image_draws: Tensor) -> Tensor:
    """Per resample, the mean over the drawn seeds of the mean over the drawn images: values (S, M, ...) with the
    draws of ``two_level_indices`` (R, S), (R, M) -> (R, ...)."""
    seeds, images = values.shape[:2]
    flat = values.double().reshape(seeds, images, -1)
    per_seed = torch.einsum("rm,smq->rsq", draw_weights(image_draws, images), flat)  # (R, S, q)
    means = torch.einsum("rs,rsq->rq", draw_weights(seed_draws, seeds), per_seed)
    return means.reshape(len(seed_draws), *values.shape[2:])
