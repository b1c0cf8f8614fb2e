"""The report's tables and how their numbers are written: ``Table``, ``fmt``, column labels, the ablation modes.

All values are the class ``mean`` (mean over foreground classes) averaged over runs, each with its 95 % interval
(``collect.py``); distances in px. Beside each distance metric the tables show its ``_nonempty`` value and the
empty rate: a model that misses objects has a large diagonal-filled distance and an unremarkable non-empty one.
The numbers come from the queries of ``queries.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unetlab import sources
from unetlab.conventions import feature_keys, level_of, skips_to_str, str_to_skips
from unetlab.metrics.functional import DISTANCE_METRICS
from unetlab.report.collect import EMPTY_RATE, OBJECT_COUNT, Results, Stat, skip_set_name
from unetlab.report.intervals import Diff
from unetlab.report.queries import (
    LAYER_METRICS,
    ablation_modes,
    average,
    by_tolerance,
    detection_by_size,
    floor_detection_by_size,
    layer_objects,
    model_rows,
    object_bins,
    shapley,
    shifts,
    susceptibility,
    tolerances,
)
from unetlab.runs.results import NONEMPTY

BOUNDARY_METRICS = ("hd95", "assd", "nsd", "bf1")


# Axis and column labels: the distances in px, nsd a fraction of the boundary, the rest as they are named.
def metric_label(metric: str, unit: str = "px") -> str:
    """``hd95 (px)``, ``hd95 non-empty (um)``, ``nsd (fraction)``, ``empty rate``: a column or axis label."""
    if metric == "nsd":
        return "nsd (fraction)"
    if metric == EMPTY_RATE:
        return "empty rate"
    if metric.endswith(NONEMPTY) and metric.removesuffix(NONEMPTY) in DISTANCE_METRICS:
        return f"{metric.removesuffix(NONEMPTY)} non-empty ({unit})"
    return f"{metric} ({unit})" if metric in DISTANCE_METRICS else metric


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def fmt(value: Stat | Diff | float | None, digits: int = 2) -> str:
    """``1.00 [0.90, 1.10]`` (the mean over runs or a paired difference, with its 95 % interval), ``1.00`` where
    there is no interval, ``–`` where there is no number."""
    if value is None:
        return "–"
    if isinstance(value, Stat | Diff):
        number = value.mean if isinstance(value, Stat) else value.value
        if math.isnan(number):
            return "–"
        if math.isnan(value.low) or math.isnan(value.high):
            return f"{number:.{digits}f}"
        return f"{number:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def fmt_metric(metric: str, stat: Stat | None) -> str:
    """``fmt`` with three decimals for the empty rate, whose telling values (a few images in a hundred) are small."""
    return fmt(stat, 3 if metric == EMPTY_RATE else 2)


def with_missed(metrics: tuple[str, ...]) -> list[str]:
    """Beside each distance metric its non-empty value, and after the distances the empty rate: missed objects
    (a large distance, an unremarkable non-empty one, a high empty rate) told from misplaced boundaries."""
    out = []
    for metric in metrics:
        out.append(metric)
        if metric in DISTANCE_METRICS:
            out.append(metric + NONEMPTY)
    distances = [i for i, metric in enumerate(out) if metric in DISTANCE_METRICS or metric.endswith(NONEMPTY)]
    if distances:
        out.insert(distances[-1] + 1, EMPTY_RATE)
    return out


MODE_TEXT = {
    "mean": "replaces each channel of the skip by its spatial mean: it removes everything spatial (the statistics "
    "are kept, the location is removed)",
    "zero": "replaces the skip by zeros: it removes everything, the channel statistics the decoder expects included",
}


def mode_text(mode: str) -> str:
    """What a test-time ablation mode removes, in one clause (``docs/ablations.md``)."""
    if mode.startswith("lowpass:") and mode.removeprefix("lowpass:").isdigit():
        k = mode.removeprefix("lowpass:")
        if k == "1":
            return (
                "average-pools the skip by 2 and upsamples it back: it removes only the detail the skip carries "
                "beyond the next coarser level, what it adds that the decoder path could not"
            )
        return (
            f"average-pools the skip by {2 ** int(k)} and upsamples it back: it removes the detail finer than "
            f"{2 ** int(k)} px of its level"
        )
    return MODE_TEXT.get(mode, "an ablation mode without a description here")


def mode_sentences(modes: list[str]) -> str:
    """One sentence per mode present, the leading one first."""
    roles = ["leads", "the contrast", "also shown"]
    return " ".join(
        f"`{mode}` ({roles[min(index, 2)]}) {mode_text(mode)}." if len(modes) > 1 else f"`{mode}` {mode_text(mode)}."
        for index, mode in enumerate(modes)
    )


# ---- tables -----------------------------------------------------------------------------------------------


def metric_table(results: Results, title: str, metrics: tuple[str, ...]) -> Table | None:
    """A row per model: its metrics (distances with their non-empty value and the empty rate), with intervals."""
    columns = with_missed(metrics)
    rows = []
    for model in model_rows(results):
        stats = [results.get(model, "model", metric) for metric in columns]
        if any(stats):
            runs = max(s.runs for s in stats if s)
            cells = [fmt_metric(metric, stat) for metric, stat in zip(columns, stats)]
            rows.append([str(model.depth), model.skip_label, model.skips, str(runs), *cells])
    if not rows:
        return None
    labels = [metric_label(m, results.unit) for m in columns]
    return Table(title, ["depth", "skip set", "kept levels", "runs", *labels], rows)


def params_table(results: Results) -> Table:
    rows = [[str(m.depth), m.skip_label, m.skips, f"{results.params[m]:,}"] for m in model_rows(results)]
    return Table("Parameter counts", ["depth", "skip set", "kept levels", "parameters"], rows)


def probe_table(results: Results, metric: str = "hd95") -> Table | None:
    """A row per (model, level, feature): the floor, then the encoder and the decoder probe at that level, each with
    its non-empty value and empty rate; a probe's gap to the floor is a paired difference (same seeds and images)."""
    rows = []
    for model in model_rows(results):
        for level in range(model.depth + 1):
            name = f"{level} (bottleneck)" if level == model.depth else str(level)
            floor = sources.floor(level)
            keys = [("floor", floor), ("probe enc", sources.probe(f"enc{level}"))]
            if level < model.depth:
                keys.append(("probe dec", sources.probe(f"dec{level}")))
            for feature, source in keys:
                if results.get(model, source, metric) is None:
                    continue
                cells = [fmt_metric(m, results.get(model, source, m)) for m in (metric, metric + NONEMPTY, EMPTY_RATE)]
                gap = None if source == floor else results.difference((model, source), (model, floor), metric)
                rows.append([str(model.depth), model.skip_label, name, feature, *cells, fmt(gap)])
    if not rows:
        return None
    unit = f" ({results.unit})" if metric in DISTANCE_METRICS else ""
    columns = ["depth", "skip set", "level", "feature", f"{metric}{unit}", f"{metric} non-empty{unit}", "empty rate",
               f"gap{unit}"]  # fmt: skip
    return Table(f"Probe {metric} by level and the resolution floor (gap = probe − floor, paired)", columns, rows)


def shapley_tables(results: Results, metrics: tuple[str, ...] = ("hd95", "dice")) -> list[Table]:
    """One table per ablation mode, in the report's order (the leading mode first)."""
    tables = []
    for mode in ablation_modes(results):
        per_metric = {metric: dict(shapley(results, mode, metric)) for metric in metrics}
        models = sorted({m for values in per_metric.values() for m in values}, key=results.models.index)
        rows = []
        for model in models:
            for level in model.kept:
                stats = [per_metric[metric].get(model, {}).get(level) for metric in metrics]
                # φ of an overlap metric is a small fraction: three decimals keep it from reading as 0.00
                cells = [fmt(stat, 2 if metric in DISTANCE_METRICS else 3) for metric, stat in zip(metrics, stats)]
                rows.append([str(model.depth), model.skip_label, str(level), *cells])
        if rows:
            columns = ["depth", "skip set", "level", *(f"φ {metric_label(m, results.unit)}" for m in metrics)]
            tables.append(Table(f"Shapley value of each skip level ({mode} ablation)", columns, rows))
    return tables


def ablation_tables(results: Results, metric: str = "hd95") -> list[Table]:
    """One table per ablation mode (the leading mode first): a row per model and ablated subset of its kept skips,
    the metric with its non-empty value and empty rate, and the change against the intact model (paired)."""
    tables = []
    for mode in ablation_modes(results, prefix="ablate"):
        rows = []
        for model in model_rows(results):
            prefix = sources.ablation_prefix(mode)
            subsets = {source.removeprefix(prefix) for (m, source, _, _) in results.stats
                       if m == model and source.startswith(prefix)}  # fmt: skip
            for levels in sorted(subsets, key=lambda text: (len(str_to_skips(text)), str_to_skips(text))):
                source = prefix + levels
                cells = [fmt_metric(m, results.get(model, source, m)) for m in (metric, metric + NONEMPTY, EMPTY_RATE)]
                change = results.difference((model, source), (model, "model"), metric)
                dice = results.get(model, source, "dice")
                rows.append([str(model.depth), model.skip_label, skips_to_str(str_to_skips(levels)),
                             *cells, fmt(change), fmt(dice)])  # fmt: skip
        if rows:
            unit = f" ({results.unit})" if metric in DISTANCE_METRICS else ""
            change = "change (px, paired)" if metric in DISTANCE_METRICS else "change (paired)"
            columns = ["depth", "skip set", "ablated levels", f"{metric}{unit}", f"{metric} non-empty{unit}",
                       "empty rate", change, "dice"]  # fmt: skip
            title = (
                f"Test-time ablation ({mode}): the model with the listed kept skips ablated, change = ablated − intact"
            )
            tables.append(Table(title, columns, rows))
    return tables


# ---- per object, by size; nsd over tolerances ------------------------------------------------------------------


def objects_table(results: Results) -> Table | None:
    """A row per model and per floor level: the fraction of ground-truth objects detected in each size bin (IoU >=
    0.5); the floors show what each level's resolution alone allows."""
    bins = object_bins(results)
    if not bins:
        return None
    rows = []
    for model, stats in detection_by_size(results).items():
        rows.append([str(model.depth), model.skip_label, *(fmt(stat) for stat in stats)])
    for level, stats in floor_detection_by_size(results).items():
        rows.append(["–", f"floor of level {level}", *(fmt(stat) for stat in stats)])
    counts = [average([results.get(m, sources.objects(sources.MODEL, name), OBJECT_COUNT) for m in results.models])
              for name in bins]  # fmt: skip
    if any(count is not None for count in counts):  # the same objects for every model: the test split's
        rows.append(["–", "objects in the test split", *("–" if c is None else f"{c.mean:.0f}" for c in counts)])
    columns = ["depth", "skip set", *(f"{name} {results.unit}" for name in bins)]
    title = "Fraction of ground-truth objects detected (IoU ≥ 0.5), by equivalent diameter"
    return Table(title, columns, rows)


def tolerance_table(results: Results, metrics: tuple[str, ...] = ("nsd", "bf1")) -> Table | None:
    """A row per model and metric: the value at every tolerance."""
    taus = tolerances(results, metrics[0])
    if not taus:
        return None
    rows = []
    for metric in metrics:
        for model, stats in by_tolerance(results, metric).items():
            rows.append([str(model.depth), model.skip_label, metric, *(fmt(stat) for stat in stats)])
    columns = ["depth", "skip set", "metric", *(f"τ = {tau:g} {results.unit}" for tau in taus)]
    return Table("Surface Dice (nsd) and boundary F1 at each tolerance τ", columns, rows)


# ---- test-time shifts -------------------------------------------------------------------------------------------


def shift_table(results: Results, metric: str = "hd95") -> Table | None:
    """A row per model: ``metric`` in domain, then under each shift with its change against in domain (paired: the
    same images, only shifted)."""
    names = shifts(results)
    if not names:
        return None
    rows = []
    for model in model_rows(results):
        cells = [fmt(results.get(model, "model", metric))]
        for name in names:
            change = results.difference((model, sources.shift(name)), (model, sources.MODEL), metric)
            cells += [fmt(results.get(model, sources.shift(name), metric)), fmt(change)]
        rows.append([str(model.depth), model.skip_label, *cells])
    unit = f" ({results.unit})" if metric in DISTANCE_METRICS else ""
    columns = ["depth", "skip set", f"in domain{unit}"]
    for name in names:
        columns += [f"{name}{unit}", f"{name} change"]
    return Table(f"{metric} in domain and under each test-time shift (change = shifted − in domain, paired)",
                 columns, rows)  # fmt: skip


def susceptibility_table(results: Results) -> Table | None:
    """A row per model and shift: the Hellinger distance of every feature key's activations, in domain vs shifted."""
    names = shifts(results)
    depth = max((m.depth for m in results.models), default=0)
    keys = feature_keys(depth, logits=False)
    rows = []
    for model in model_rows(results):
        for name in names:
            found = dict(susceptibility(results, model, name))
            if found:
                rows.append([str(model.depth), model.skip_label, name, *(fmt(found.get(key), 3) for key in keys)])
    if not rows:
        return None
    return Table("Domain susceptibility: Hellinger distance between in-domain and shifted activations, per feature key",
                 ["depth", "skip set", "shift", *keys], rows)  # fmt: skip


# ---- found vs placed, layer by layer -----------------------------------------------------------------------------


def layer_objects_table(results: Results) -> Table | None:
    """A row per feature key: the floor of its level and each model's probe, found share and hd95 of the found."""
    layers = layer_objects(results)
    if layers is None:
        return None
    rows = []
    for i, key in enumerate(layers.keys):
        cells = [fmt(layers.floor[metric][i]) for metric in LAYER_METRICS]
        for label in layers.probes:
            cells += [fmt(layers.probes[label][metric][i]) for metric in LAYER_METRICS]
        rows.append([key, str(level_of(key)), str(2 ** level_of(key)), *cells])
    unit = results.unit
    columns = ["key", "level", f"cell ({unit})", "floor: found", f"floor: hd95 of found ({unit})", "floor: spurious"]
    for label in layers.probes:
        name = skip_set_name(label)
        columns += [f"{name}: found", f"{name}: hd95 of found ({unit})", f"{name}: spurious"]
    title = (
        f"Found vs placed by layer, depth {layers.depth}: the share of ground-truth objects each key's probe finds "
        "(IoU ≥ 0.5), the hd95 of the objects it finds and its spurious blobs per image, beside the floor of the "
        "key's level"
    )
    return Table(title, columns, rows)
