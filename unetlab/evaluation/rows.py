"""The rows of a run's results table (``unetlab.runs.results`` holds its format): a source's per-image values
reduced to a value, its spread and its 95 % percentile bootstrap interval over the test images, from one set of
resamples per run, so that intervals of different sources are paired."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from unetlab import sources
from unetlab.bootstrap import LEVEL, draw_weights, mean_interval, percentile_interval
from unetlab.metrics.classes import OBJECT_COLUMNS
from unetlab.metrics.functional import DISTANCE_METRICS, METRIC_NAMES
from unetlab.runs.results import EMPTY, NONEMPTY


def mean_row(
    source: str, metric: str, class_: str, series: Tensor, indices: Tensor, empty_rate: float, unit: str
) -> dict:
    """One row whose value is the mean of ``series`` (M,) over the test images: population std, n, and the
    bootstrap interval over the resamples ``indices`` (R, M)."""
    low, high = mean_interval(series, indices)
    return {
        "source": source, "metric": metric, "class": class_,
        "value": series.mean().item() if len(series) else float("nan"),
        "std": series.std(correction=0).item() if len(series) else float("nan"),
        "n": len(series), "empty_rate": empty_rate, "ci_low": low, "ci_high": high, "unit": unit,
    }  # fmt: skip


def source_rows(
    source: str, per_image: Tensor, indices: Tensor, unit: str = "px", empty_rate: bool = True
) -> list[dict]:
    """The rows of one source from its per-image values ``per_image`` (M, C-1, 9) (``BoundaryMetrics.per_image_values``)
    and the run's bootstrap resamples ``indices`` (R, M).

    Per class ``1..C-1`` and ``mean`` (each image averaged over the foreground classes first): every metric's mean,
    population std, n, empty rate and interval; then ``<distance>_nonempty`` over the (image, class) pairs where
    neither mask is empty. ``empty_rate=False`` (Shapley values, differences of sources): that column and the
    nonempty rows are left out.
    """
    per_image = per_image.double()
    groups = {str(c + 1): per_image[:, c : c + 1] for c in range(per_image.shape[1])}
    groups["mean"] = per_image
    rows = []
    for class_, values in groups.items():  # values (M, classes, 9)
        per_class_mean = values.mean(dim=1)  # (M, 9)
        rate = per_class_mean[:, EMPTY].mean().item() if empty_rate and len(values) else float("nan")
        for column, metric in enumerate(METRIC_NAMES):
            unit_of = unit if metric in DISTANCE_METRICS else ""
            rows.append(mean_row(source, metric, class_, per_class_mean[:, column], indices, rate, unit_of))
        if not empty_rate:
            continue
        found = 1 - values[..., EMPTY]  # (M, classes): 1 where both masks are non-empty
        for metric in DISTANCE_METRICS:
            distance = values[..., METRIC_NAMES.index(metric)]
            kept = distance[found.bool()]
            numerator, denominator = (distance * found).sum(dim=1), found.sum(dim=1)  # per image
            ratios = numerator[indices].sum(dim=1) / denominator[indices].sum(dim=1)  # (R,): a ratio of sums
            low, high = percentile_interval(ratios)
            rows.append({
                "source": source, "metric": metric + NONEMPTY, "class": class_,
                "value": kept.mean().item() if kept.numel() else float("nan"),
                "std": kept.std(correction=0).item() if kept.numel() else float("nan"),
                "n": int(found.any(dim=1).sum()), "empty_rate": rate, "ci_low": low, "ci_high": high, "unit": unit,
            })  # fmt: skip
    return rows


def tolerance_rows(source: str, per_image: Tensor, columns: Sequence[str], indices: Tensor) -> list[dict]:
    """Rows of ``nsd@τ`` and ``bf1@τ`` (``columns``) from their per-image values (M, C-1, 2T)
    (``BoundaryMetrics.tolerance_values``): per class and ``mean``, as ``source_rows`` does for the eight metrics
    (no empty rate: it is the one of the source's other rows)."""
    per_image = per_image.double()
    groups = {str(c + 1): per_image[:, c] for c in range(per_image.shape[1])} | {"mean": per_image.mean(dim=1)}
    rows = []
    for class_, values in groups.items():  # values (M, 2T)
        for column, metric in enumerate(columns):
            rows.append(mean_row(source, metric, class_, values[:, column], indices, float("nan"), ""))
    return rows


def object_rows(source: str, sums: Tensor, bin_names: Sequence[str], indices: Tensor, unit: str = "px") -> list[dict]:
    """The per-object rows of ``source`` from its per-image sums (M, C-1, B, 6) (``ObjectMetrics.per_image_values``,
    columns ``OBJECT_COLUMNS``) and the run's bootstrap resamples ``indices`` (R, M).

    Per bin (and one more, ``all``, pooling the objects of every size), per class and ``mean`` (the objects of
    every foreground class pooled): ``spurious`` (predicted components of that size that share no pixel with any
    ground-truth object, per test image; ``n`` the images), ``detected`` (detected / objects,
    ``n`` the objects), ``hd95`` and ``assd`` (the mean over the detected objects, ``n`` those). ``std`` is over the
    objects; the interval is the bootstrap over test images of the ratio of sums (objects weigh the same, whatever
    image they are in). NaN where a bin has no objects (no detected ones, for the distances).
    """
    column = {name: i for i, name in enumerate(OBJECT_COLUMNS)}
    sums = sums.double()
    sums = torch.cat([sums, sums.sum(dim=2, keepdim=True)], dim=2)  # a last bin pooling every size: ALL_SIZES
    bin_names = [*bin_names, sources.ALL_SIZES]
    classes = [str(c + 1) for c in range(sums.shape[1])] + ["mean"]
    values = torch.cat([sums, sums.sum(dim=1, keepdim=True)], dim=1)  # (M, G, B, 6): the classes, then "mean"
    metrics = (("detected", "objects", "detected"), ("hd95", "detected", "hd95_sq"), ("assd", "detected", "assd_sq"))
    numerators = [column[metric] for metric, _, _ in metrics]
    denominators = [column[count] for _, count, _ in metrics]
    # every resample's sums at once: how often each image was drawn (R, M) times its sums; then the ratios (R, G, B, 3)
    drawn = torch.einsum("rm,mgbk->rgbk", draw_weights(indices, len(values)) * indices.shape[1], values)
    ratios = drawn[..., numerators] / drawn[..., denominators]  # NaN where a resample has no object (0 / 0)
    images = len(values)
    per_image = drawn[..., column["spurious"]] / max(indices.shape[1], 1)  # spurious blobs per drawn image (R, G, B)
    ratios = torch.cat([ratios, per_image[..., None]], dim=-1)  # (R, G, B, 4)
    tail = (1 - LEVEL) / 2
    bounds = torch.nanquantile(ratios, torch.tensor([tail, 1 - tail], dtype=ratios.dtype), dim=0)  # (2, G, B, 4)
    total = values.sum(dim=0)  # (G, B, 7)
    spurious = values[..., column["spurious"]]  # (M, G, B)
    rows = []
    for b, bin_name in enumerate(bin_names):
        name = sources.objects(source, bin_name)
        for g, class_ in enumerate(classes):
            for i, (metric, count, square) in enumerate(metrics):
                n = int(total[g, b, column[count]])
                mean = float(total[g, b, column[metric]] / n) if n else float("nan")
                # std over objects from the sums of squares (detected is 0/1: its square is itself)
                variance = float(total[g, b, column[square]] / n) - mean**2 if n else float("nan")
                rows.append({
                    "source": name, "metric": metric, "class": class_, "value": mean,
                    "std": math.sqrt(max(variance, 0.0)) if n else float("nan"),
                    "n": n, "empty_rate": float("nan"), "ci_low": float(bounds[0, g, b, i]),
                    "ci_high": float(bounds[1, g, b, i]), "unit": unit if metric in DISTANCE_METRICS else "",
                })  # fmt: skip
            rows.append({
                "source": name, "metric": "spurious", "class": class_,
                "value": float(total[g, b, column["spurious"]] / images) if images else float("nan"),
                "std": float(spurious[:, g, b].std()) if images > 1 else float("nan"),
                "n": images, "empty_rate": float("nan"), "ci_low": float(bounds[0, g, b, -1]),
                "ci_high": float(bounds[1, g, b, -1]), "unit": "",
            })  # fmt: skip
    return rows


def object_sums(source: str, sums: Tensor, bin_names: Sequence[str]) -> dict[str, Tensor]:
    """The per-image object sums of ``source`` (M, C-1, B, 7) (``ObjectMetrics.per_image_values``) by per-object
    source, one per bin and one for ``all`` (every size pooled): ``objects/4-8`` -> (M, C-1, 7), columns
    ``OBJECT_COLUMNS``. ``per_image.npz`` keeps them beside the boundary values, so the report pairs per-object
    comparisons as it pairs every other."""
    out = {sources.objects(source, name): sums[:, :, b] for b, name in enumerate(bin_names)}
    out[sources.objects(source, sources.ALL_SIZES)] = sums.sum(dim=2)
    return out
