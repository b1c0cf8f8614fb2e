"""The model under test-time domain shift, and how far each layer's features move (``docs/results-table.md``).

For each shift of ``eval.shifts`` (``kind:strength``, ``unetlab.data.shifts``) the test split is drawn again with the
shift (same scenes and masks, shifted images) and scored:

- ``shift/<shift>``: the model's metrics on the shifted split, per image (paired with ``model``: same images);
- ``susceptibility/<shift>/<key>``: the *domain susceptibility* of feature key ``<key>``, the Hellinger distance
  between its in-domain and its shifted activation distributions, averaged over channels. Per channel, activations
  at ``POSITIONS`` fixed positions of every test image (the same positions in both domains) are binned into ``BINS``
  equal bins spanning the channel's pooled 0.5-99.5 % quantiles of both domains (values beyond go to the end bins);
  ``H(p, q) = sqrt(1 - sum_b sqrt(p_b q_b))`` in [0, 1] (0: the same histogram, 1: disjoint). The interval resamples
  the test images (the run's resamples) and recomputes the histograms; resampled histograms are lumpier, which
  biases the distance upwards, so the resamples are centred on the value (median moved to it) first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from unetlab import sources
from unetlab.bootstrap import percentile_interval
from unetlab.conventions import feature_keys, level_of
from unetlab.data.shifts import shift_name
from unetlab.metrics import BoundaryMetrics
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike

POSITIONS = 256  # feature positions sampled per image and key (all of them when the map is smaller)
BINS = 32  # histogram bins per channel
QUANTILES = (0.005, 0.995)  # the histogram range of a channel, from both domains pooled


def shift_source(shift: str) -> str:
    """``shift/noise:0.1``: the model's rows on the shifted test split."""
    return sources.shift(shift_name(shift))


def susceptibility_source(shift: str, key: str) -> str:
    """``susceptibility/noise:0.1/enc0``: the Hellinger distance of ``key``'s features under ``shift``."""
    return sources.susceptibility(shift_name(shift), key)


def check_shifts(shifts: Sequence[str], datamodule) -> None:
    """ValueError unless the data set can draw its test split under a shift (the shapes data set can)."""
    if shifts and not hasattr(datamodule, "shifted_split"):
        raise ValueError(
            f"eval.shifts={list(shifts)}: test-time shifts are drawn by the shapes data set (data=shapes); "
            f"{type(datamodule).__name__} has none"
        )


def sample_positions(net: UNetLike, height: int, width: int, seed: int) -> dict[str, Tensor]:
    """Per feature key (``logits`` aside), ``POSITIONS`` flat positions of its map drawn once (seeded): (P,) int64."""
    generator = torch.Generator().manual_seed(seed)
    positions = {}
    for key in feature_keys(net.depth, logits=False):
        cells = (height >> level_of(key)) * (width >> level_of(key))
        positions[key] = torch.randperm(cells, generator=generator)[: min(POSITIONS, cells)]
    return positions


def feature_samples(net: UNetLike, images: Tensor, positions: dict[str, Tensor]) -> dict[str, Tensor]:
    """The activations of every key at its positions: key -> (N, C, P) float32 on the CPU."""
    features = protocol.features(net, images)
    return {key: features[key].flatten(2)[..., at.to(images.device)].float().cpu() for key, at in positions.items()}


def histograms(inside: Tensor, shifted: Tensor, bins: int = BINS) -> tuple[Tensor, Tensor]:
    """Per image and channel the histogram counts of both domains on shared bins: (M, C, P) twice -> (M, C, B) twice.

    A channel's bins span its 0.5-99.5 % quantiles over both domains; a constant channel puts everything in bin 0."""
    pooled = torch.cat([inside, shifted]).transpose(0, 1).flatten(1)  # (C, 2MP)
    # torch.quantile takes at most 2**24 elements per call: a few channels at a time
    step = max(1, (1 << 24) // max(pooled.shape[1], 1))
    bounds = torch.cat([torch.quantile(chunk, torch.tensor(QUANTILES), dim=1) for chunk in pooled.split(step)], dim=1)
    low, width = bounds[0].view(1, -1, 1), (bounds[1] - bounds[0]).view(1, -1, 1)

    def counts(values: Tensor) -> Tensor:
        scaled = torch.where(width > 0, (values - low) / width.clamp_min(1e-12), torch.zeros_like(values))
        index = (scaled * bins).floor().clamp(0, bins - 1).long()
        return torch.zeros(*values.shape[:2], bins).scatter_add_(2, index, torch.ones_like(values))

    return counts(inside), counts(shifted)


def hellinger(p: Tensor, q: Tensor) -> Tensor:
    """Mean over channels of the Hellinger distance of histogram counts (..., C, B) -> (...)."""
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    q = q / q.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    affinity = (p * q).sqrt().sum(dim=-1)
    return (1 - affinity).clamp_min(0).sqrt().mean(dim=-1)


def susceptibility_row(source: str, inside: Tensor, shifted: Tensor, indices: Tensor) -> dict:
    """One results row from per-image histograms (M, C, B) of both domains: the Hellinger distance of the summed
    histograms, and its interval over the resampled images ``indices`` (R, M)."""
    value = float(hellinger(inside.sum(dim=0), shifted.sum(dim=0)))
    weights = torch.zeros(indices.shape[0], inside.shape[0]).scatter_add_(1, indices, torch.ones(indices.shape))
    resampled = hellinger(torch.einsum("rm,mcb->rcb", weights, inside), torch.einsum("rm,mcb->rcb", weights, shifted))
    # Resampling with replacement makes histograms lumpier, which biases a histogram distance upwards: the resamples
    # are centred on the value (their median moved to it) before the percentiles are read.
    resampled = resampled.double()
    low, high = percentile_interval(resampled - (resampled.median() - value))
    return {
        "source": source, "metric": "hellinger", "class": "mean", "value": value,
        "std": float("nan"), "n": inside.shape[0], "empty_rate": float("nan"), "ci_low": low, "ci_high": high,
        "unit": "",
    }  # fmt: skip


def score_shifts(
    net: UNetLike,
    datamodule,
    shifts: Sequence[str],
    new_metric: Callable[[], BoundaryMetrics],
    batch_size: int,
    device: str,
    seed: int,
    progress: bool = False,
) -> tuple[dict[str, BoundaryMetrics], dict[str, tuple[Tensor, Tensor]]]:
    """The model's metrics on each shifted test split (``shift_source`` -> metric), and per shift and key the
    per-image histograms of both domains (``susceptibility_source`` -> (M, C, B) twice)."""
    check_shifts(shifts, datamodule)
    inside_split = datamodule.datasets["test"]
    height, width = inside_split[0][1].shape[-2:]
    positions = sample_positions(net, height, width, seed)

    def samples(split) -> dict[str, Tensor]:
        found: dict[str, list[Tensor]] = {key: [] for key in positions}
        for images, _ in DataLoader(split, batch_size=batch_size, shuffle=False):
            for key, values in feature_samples(net, images.to(device), positions).items():
                found[key].append(values)
        return {key: torch.cat(values) for key, values in found.items()}

    metrics, hists = {}, {}
    with torch.no_grad():
        inside = samples(inside_split)
        for shift in tqdm(shifts, desc="shifts", disable=not progress, leave=False):
            split = datamodule.shifted_split("test", shift)
            metric = metrics[shift_source(shift)] = new_metric()
            for images, masks in DataLoader(split, batch_size=batch_size, shuffle=False):
                metric.update(protocol.labels(protocol.logits(net, images.to(device))), masks.to(device))
            for key, values in samples(split).items():
                hists[susceptibility_source(shift, key)] = histograms(inside[key], values)
    return metrics, hists
