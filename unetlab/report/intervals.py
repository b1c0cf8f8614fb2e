"""The report's intervals: a two-level bootstrap over seeds and test images, from the runs' ``per_image.npz``.

A model's runs (seeds) were all scored on the same test images, so one resample draws the seeds with replacement
and, once, the images with replacement (``two_level_indices``): the statistic is the mean over the drawn seeds of
the mean over the drawn images. With one seed this is the image bootstrap of ``results.csv`` itself (same draws).
A comparison (a difference, or any linear combination of (model, source) means) is bootstrapped paired: the same
image draws for every term and, where the models share seeds, the same seed draws, the combination computed inside
each resample. The draws depend only on (number of seeds, number of images), so they are made once and shared.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unetlab.bootstrap import LEVEL, RESAMPLES, draw_weights, percentile_interval, two_level_indices
from unetlab.metrics.classes import COLUMNS, OBJECT_COLUMNS
from unetlab.metrics.functional import DISTANCE_METRICS, METRIC_NAMES
from unetlab.runs.results import EMPTY, NONEMPTY
from unetlab.sources import is_objects

BOOTSTRAP_SEED = 0
LINEAR = COLUMNS  # the eight metrics and empty_rate: means over images, bootstrapped as means
DISTANCE_COLUMNS = [METRIC_NAMES.index(metric) for metric in DISTANCE_METRICS]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the count: the report's tensors are small, and handing each operation to
    a second thread costs more than it saves (on a busy 2-core machine, collecting a grid took 5x longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Samples:
    """A model's per-image values: ``values[source]`` (S, M, C-1, 9) for the boundary sources and ``objects[source]``
    (S, M, C-1, 7) sums for the per-object sources (columns ``OBJECT_COLUMNS``), run ``s`` having seed ``seeds[s]``."""

    seeds: tuple[int, ...]
    values: dict[str, Tensor]
    objects: dict[str, Tensor] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return next(iter(self.values.values())).shape[1]

    def has(self, source: str, metric: str) -> bool:
        """Whether the per-image values give ``metric`` of ``source``."""
        if is_objects(source):
            return metric in OBJECT_RATIOS and source in self.objects
        return metric in LINEAR and source in self.values


# A per-object metric as a ratio of per-image sums (``OBJECT_COLUMNS``): numerator, denominator (None: per image).
OBJECT_RATIOS = {
    "detected": ("detected", "objects"),
    "hd95": ("hd95", "detected"),
    "assd": ("assd", "detected"),
    "spurious": ("spurious", None),
}


def object_terms(sums: Tensor, metric: str, class_: str) -> tuple[Tensor, Tensor]:
    """(S, M, C-1, 7) sums -> numerator and denominator (S, M) of a per-object ``metric`` for one class, or for every
    foreground class pooled (``mean``: the objects of all classes weigh the same, as in ``object_rows``)."""
    numerator, denominator = OBJECT_RATIOS[metric]
    picked = sums.sum(dim=2) if class_ == "mean" else sums[:, :, int(class_) - 1]  # (S, M, 7)
    top = picked[..., OBJECT_COLUMNS.index(numerator)]
    bottom = torch.ones_like(top) if denominator is None else picked[..., OBJECT_COLUMNS.index(denominator)]
    return top, bottom


def resampled_ratio(top: Tensor, bottom: Tensor, seed_w: Tensor, image_w: Tensor) -> Tensor:
    """The two-level bootstrap of a ratio of sums (S, M) each: per resample, per seed the ratio of the drawn images'
    sums, then the drawn seeds' mean (R,); NaN where a drawn seed has no denominator."""
    return ((image_w @ top.T) / (image_w @ bottom.T) * seed_w).sum(dim=1)


def ratio_value(top: Tensor, bottom: Tensor) -> float:
    """The seeds' mean of each seed's ratio of sums over all images (the runs' rows averaged)."""
    return float((top.sum(dim=1) / bottom.sum(dim=1)).mean())


class Draws:
    """The bootstrap draws as weights, made once per (seeds, images): every model and comparison with that many seeds
    and images uses the same ones (paired, reproducible, and the cost of drawing paid once)."""

    def __init__(self, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED):
        self.resamples, self.seed = resamples, seed
        self._weights: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._streams: dict[tuple[int, int], Tensor] = {}

    def weights(self, seeds: int, images: int) -> tuple[Tensor, Tensor]:
        """Seed weights (R, seeds) and image weights (R, images), each row summing to 1."""
        key = (seeds, images)
        if key not in self._weights:
            seed_draws, image_draws = two_level_indices(seeds, images, self.resamples, self.seed)
            self._weights[key] = draw_weights(seed_draws, seeds), draw_weights(image_draws, images)
        return self._weights[key]

    def independent_seed_weights(self, seeds: int, stream: int) -> Tensor:
        """Seed weights (R, seeds) of their own (``stream`` 0, 1, ...), for models that share no seed."""
        key = (seeds, stream)
        if key not in self._streams:
            generator = torch.Generator().manual_seed(self.seed + 1 + stream)
            self._streams[key] = draw_weights(torch.randint(seeds, (self.resamples, seeds), generator=generator), seeds)
        return self._streams[key]


def quantiles(samples: Tensor, level: float = LEVEL) -> tuple[Tensor, Tensor]:
    """Percentile interval along the first dimension of (R, ...), NaN resamples left out (``percentile_interval``)."""
    tail = (1 - level) / 2
    bounds = torch.nanquantile(samples, torch.tensor([tail, 1 - tail], dtype=samples.dtype), dim=0)
    return bounds[0], bounds[1]


def model_intervals(samples: Samples, draws: Draws) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(source, metric, class) -> the two-level interval of every number ``results.csv`` has for the model: the eight
    metrics, ``empty_rate`` and ``<distance>_nonempty`` (per seed a ratio of sums over the drawn images, as in
    ``source_rows``, then averaged over the drawn seeds), for classes ``1..C-1`` and ``mean``. All in one product."""
    sources = list(samples.values)
    values = torch.stack([samples.values[source] for source in sources], dim=2)  # (S, M, sources, C-1, 9)
    seeds, images, _, classes, _ = values.shape
    groups = {str(c + 1): values[:, :, :, c : c + 1] for c in range(classes)}
    if classes > 1:  # with one foreground class, "mean" is class 1
        groups["mean"] = values
    blocks = []
    for group in groups.values():  # (S, M, sources, k, 9)
        linear = group.mean(dim=3)  # each image first averaged over the group's classes
        found = 1 - group[..., EMPTY]  # 1 where both masks are non-empty
        numerator = (group[..., DISTANCE_COLUMNS] * found[..., None]).sum(dim=3)
        blocks.append(torch.cat([linear, numerator, found.sum(dim=3)[..., None]], dim=-1))
    stacked = torch.stack(blocks, dim=2)  # (S, M, groups, sources, 9 + 3 + 1)
    seed_w, image_w = draws.weights(seeds, images)
    per_seed = torch.einsum("rm,smq->rsq", image_w, stacked.reshape(seeds, images, -1))
    per_seed = per_seed.reshape(len(image_w), seeds, *stacked.shape[2:])  # (R, S, groups, sources, 13)
    linear = torch.einsum("rs,rs...->r...", seed_w, per_seed[..., : len(LINEAR)])
    ratios = per_seed[..., len(LINEAR) : -1] / per_seed[..., -1:]  # NaN where a drawn seed has no non-empty pair
    nonempty = torch.einsum("rs,rs...->r...", seed_w, ratios)
    low, high = quantiles(torch.cat([linear, nonempty], dim=-1))  # (groups, sources, 12)
    metrics = [*LINEAR, *(metric + NONEMPTY for metric in DISTANCE_METRICS)]
    out = {}
    for g, class_ in enumerate(groups):
        for s, source in enumerate(sources):
            for m, metric in enumerate(metrics):
                out[(source, metric, class_)] = (float(low[g, s, m]), float(high[g, s, m]))
    if classes == 1:
        out.update({(source, metric, "mean"): bounds for (source, metric, _), bounds in list(out.items())})
    return out | object_intervals(samples, draws)


def object_intervals(samples: Samples, draws: Draws) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(source, metric, class) -> the two-level interval of every per-object number (``OBJECT_RATIOS``) of the model's
    per-object sources, for classes ``1..C-1`` and ``mean`` (the classes pooled): per resample, per seed the ratio of
    the drawn images' sums, then the drawn seeds' mean (``resampled_ratio``). All in one product."""
    if not samples.objects:
        return {}
    names = list(samples.objects)
    sums = torch.stack([samples.objects[source] for source in names], dim=2)  # (S, M, sources, C-1, 7)
    seeds, images, _, classes, _ = sums.shape
    groups = {str(c + 1): sums[:, :, :, c] for c in range(classes)} | {"mean": sums.sum(dim=3)}
    stacked = torch.stack(list(groups.values()), dim=2)  # (S, M, groups, sources, 7)
    seed_w, image_w = draws.weights(seeds, images)
    drawn = torch.einsum("rm,smq->rsq", image_w, stacked.reshape(seeds, images, -1))
    drawn = drawn.reshape(len(image_w), seeds, *stacked.shape[2:])  # (R, S, groups, sources, 7)
    columns = {name: OBJECT_COLUMNS.index(name) for name in OBJECT_COLUMNS}
    ratios = []
    for numerator, denominator in OBJECT_RATIOS.values():
        top = drawn[..., columns[numerator]]
        ratios.append(top if denominator is None else top / drawn[..., columns[denominator]])
    per_seed = torch.stack(ratios, dim=-1)  # (R, S, groups, sources, metrics)
    low, high = quantiles(torch.einsum("rs,rs...->r...", seed_w, per_seed))  # (groups, sources, metrics)
    return {
        (source, metric, class_): (float(low[g, s, m]), float(high[g, s, m]))
        for g, class_ in enumerate(groups)
        for s, source in enumerate(names)
        for m, metric in enumerate(OBJECT_RATIOS)
    }


def per_image(values: Tensor, metric: str, class_: str) -> Tensor:
    """(S, M, C-1, 9) -> (S, M): one linear metric (or ``empty_rate``) of one class, or averaged over the classes."""
    column = values[..., LINEAR.index(metric)]
    return column.mean(dim=-1) if class_ == "mean" else column[..., int(class_) - 1]


@dataclass(frozen=True)
class Diff:
    """A comparison: its value, its 95 % interval (NaN when not bootstrapped) and whether it is significant.

    ``significant``: the interval holds no 0 (without an interval: the two numbers' own intervals are apart);
    ``seeds`` are the seeds the bootstrap paired (empty: none).
    """

    value: float
    low: float
    high: float
    significant: bool
    paired: bool
    seeds: tuple[int, ...] = ()

    @classmethod
    def from_interval(cls, value: float, low: float, high: float, seeds: tuple[int, ...] = ()) -> Diff:
        """Significant where the interval holds no 0 (an interval of width 0 at a non-zero value included); no
        interval (NaN bounds: no resample had a value) shows nothing."""
        if math.isnan(low) or math.isnan(high):
            return cls(value, low, high, False, True, seeds)
        return cls(value, low, high, not low <= 0 <= high, True, seeds)


def paired_contrast(terms: Sequence[tuple[float, Samples, str]], metric: str, class_: str, draws: Draws) -> Diff | None:
    """``sum(weight * mean of (model, source))`` with its paired two-level interval; None where the terms cannot be
    paired (different numbers of test images, or a number that no per-image values give).

    Seeds that every model has are drawn jointly (the other runs are left out); models that share no seed (or repeat
    one) get seed draws of their own, the image draws still shared. A per-object metric is a ratio of sums, taken per
    seed over the drawn images in every resample (``resampled_ratio``)."""
    if any(not samples.has(source, metric) for _, samples, source in terms):
        return None
    ratio = {is_objects(source) for _, _, source in terms}
    if len(ratio) != 1:  # a per-object number against a per-image one: no common statistic
        return None
    (ratio,) = ratio
    images = {samples.images for _, samples, _ in terms}
    if len(images) != 1:
        return None
    (count,) = images
    unique = all(len(set(samples.seeds)) == len(samples.seeds) for _, samples, _ in terms)
    common = sorted(set.intersection(*(set(samples.seeds) for _, samples, _ in terms))) if unique else []
    if common:  # every term on the same seeds and images
        seed_w, image_w = draws.weights(len(common), count)

        def on_common(samples: Samples, table: Tensor) -> Tensor:
            return table[[samples.seeds.index(seed) for seed in common]]

        if ratio:
            value, resampled = 0.0, torch.zeros(len(image_w), dtype=torch.float64)
            for weight, samples, source in terms:
                top, bottom = object_terms(on_common(samples, samples.objects[source]), metric, class_)
                resampled += weight * resampled_ratio(top, bottom, seed_w, image_w)
                value += weight * ratio_value(top, bottom)
            return Diff.from_interval(value, *percentile_interval(resampled), seeds=tuple(common))
        contrast = sum(
            weight * per_image(on_common(samples, samples.values[source]), metric, class_)
            for weight, samples, source in terms
        )
        resampled = ((image_w @ contrast.T) * seed_w).sum(dim=1)  # (R,)
        return Diff.from_interval(float(contrast.mean()), *percentile_interval(resampled), seeds=tuple(common))
    _, image_w = draws.weights(1, count)  # the image draws are the same for any number of seeds
    value, resampled = 0.0, torch.zeros(len(image_w), dtype=torch.float64)
    for stream, (weight, samples, source) in enumerate(terms):
        seed_w = draws.independent_seed_weights(len(samples.seeds), stream)
        if ratio:
            top, bottom = object_terms(samples.objects[source], metric, class_)
            resampled += weight * resampled_ratio(top, bottom, seed_w, image_w)
            value += weight * ratio_value(top, bottom)
            continue
        values = per_image(samples.values[source], metric, class_)  # (S, M)
        resampled += weight * ((image_w @ values.T) * seed_w).sum(dim=1)
        value += weight * float(values.mean())
    return Diff.from_interval(value, *percentile_interval(resampled))
