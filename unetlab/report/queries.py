"""The numbers behind the report: queries over the seed-averaged ``Results`` of one setting (``collect.py``).

Series by depth, the probe panels, the test-time ablation modes and Shapley values, per-object detection by size,
the tolerance sweep, the test-time shifts and domain susceptibility, found vs placed by layer: each a ``Stat`` (the
class ``mean`` averaged over runs, with its 95 % interval) or a list or dict of them, never text. The figures
(``plots.py``), the tables (``tables.py``), the findings, the published claims and the explorer read them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from unetlab import sources
from unetlab.conventions import feature_keys, level_of
from unetlab.report.collect import Model, Results, Stat, skip_order


def ordered_labels(labels) -> list[str]:
    return sorted(set(labels), key=skip_order)


def by_depth(results: Results, metric: str, source: str = "model") -> dict[str, list[tuple[int, Stat]]]:
    """Skip-set label -> [(depth, stat)] sorted by depth; ``all`` joins the all-skip models of every depth."""
    series: dict[str, list[tuple[int, Stat]]] = defaultdict(list)
    for model in results.models:
        stat = results.get(model, source, metric)
        if stat is not None and not math.isnan(stat.mean):
            series[model.skip_label].append((model.depth, stat))
    return {label: sorted(series[label]) for label in ordered_labels(series)}


def params_by_depth(results: Results) -> dict[str, list[tuple[int, int]]]:
    series: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for model in results.models:
        series[model.skip_label].append((model.depth, results.params[model]))
    return {label: sorted(series[label]) for label in ordered_labels(series)}


@dataclass
class ProbePanel:
    """Probe hd95 by feature key for the models of one depth, and the resolution floor at each key's level."""

    depth: int
    keys: list[str]
    floor: list[Stat | None]  # averaged over the models of this depth (same test data, same floor)
    probes: dict[str, list[Stat | None]]  # skip label -> stat per key
    left_out: list[str]  # skip labels not drawn (too many models at this depth)


MAX_PROBE_LINES = 4


def probe_panels(results: Results, metric: str = "hd95") -> list[ProbePanel]:
    """One panel per depth that has probe rows; every skip set if few, else only ``all`` and ``none``."""
    panels = []
    for depth in sorted({m.depth for m in results.models}):
        models = [m for m in results.models if m.depth == depth]
        keys = feature_keys(depth, logits=False)
        with_probes = [m for m in models if any(results.get(m, sources.probe(k), metric) for k in keys)]
        if not with_probes:
            continue
        shown = with_probes
        if len(with_probes) > MAX_PROBE_LINES:
            shown = [m for m in with_probes if m.skip_label in ("all", "none")] or with_probes[:MAX_PROBE_LINES]
        floor = [average([results.get(m, sources.floor(level_of(key)), metric) for m in models]) for key in keys]
        probes = {m.skip_label: [results.get(m, sources.probe(k), metric) for k in keys] for m in shown}
        left_out = [m.skip_label for m in with_probes if m not in shown]
        panels.append(ProbePanel(depth, keys, floor, probes, left_out))
    return panels


def average(stats: list[Stat | None]) -> Stat | None:
    """Mean and interval bounds averaged over several stats of the same number (e.g. the floor of every model)."""
    stats = [stat for stat in stats if stat is not None and not math.isnan(stat.mean)]
    if not stats:
        return None
    mean = sum(stat.mean for stat in stats) / len(stats)
    low, high = (sum(getattr(stat, side) for stat in stats) / len(stats) for side in ("low", "high"))
    return Stat(mean, float("nan"), min(stat.runs for stat in stats), low, high)


def mode_order(mode: str) -> tuple:
    """``lowpass:k`` first (by k: lowpass:1 removes only the detail a skip adds beyond the next coarser level),
    then ``mean`` (the contrast: everything spatial), ``zero``, then anything else."""
    if mode.startswith("lowpass:") and mode.removeprefix("lowpass:").isdigit():
        return (0, int(mode.removeprefix("lowpass:")), mode)
    return (1 + ["mean", "zero"].index(mode) if mode in ("mean", "zero") else 3, 0, mode)


def ablation_modes(results: Results, prefix: str = "shapley") -> list[str]:
    """Test-time ablation modes present, the report's order (``mode_order``: lowpass:1 first, mean as the contrast)."""
    modes = {source.split("/")[1] for (_, source, _, _) in results.stats if source.startswith(f"{prefix}/")}
    return sorted(modes, key=mode_order)


def shapley(results: Results, mode: str, metric: str) -> list[tuple[Model, dict[int, Stat]]]:
    """(model, {level: Shapley value}) for the models with kept skips that have Shapley rows."""
    out = []
    for model in results.models:
        values = {level: results.get(model, sources.shapley(mode, level), metric) for level in model.kept}
        values = {level: stat for level, stat in values.items() if stat is not None and not math.isnan(stat.mean)}
        if values:
            out.append((model, values))
    return out


def model_rows(results: Results) -> list[Model]:
    return sorted(results.models, key=lambda m: (skip_order(m.skip_label), m.depth))


# ---- per object, by size; nsd over tolerances ------------------------------------------------------------------


def bin_lower_edge(name: str) -> float:
    """``"4-8"`` -> 4.0, ``"32+"`` -> 32.0: the order of the size bins."""
    return float(name.rstrip("+").split("-")[0])


def object_bins(results: Results) -> list[str]:
    """The size bins of the per-object rows (``objects/<bin>``), smallest first; empty without such rows."""
    found = (sources.objects_of(source) for (_, source, _, _) in results.stats)
    bins = {parts[1] for parts in found if parts is not None and parts[0] == sources.MODEL}
    return sorted(bins - {sources.ALL_SIZES}, key=bin_lower_edge)


def detection_by_size(results: Results, metric: str = "detected") -> dict[Model, list[Stat | None]]:
    """Model -> its per-object ``metric`` in each bin of ``object_bins`` (None where the bin has no object)."""
    bins = object_bins(results)
    series = {}
    for model in model_rows(results):
        stats = [results.get(model, sources.objects(sources.MODEL, name), metric) for name in bins]
        stats = [None if stat is None or math.isnan(stat.mean) else stat for stat in stats]
        if any(stats):
            series[model] = stats
    return series


def floor_detection_by_size(results: Results, metric: str = "detected") -> dict[int, list[Stat | None]]:
    """Level -> the floor's per-object ``metric`` in each bin, averaged over the models that have that floor (the
    floor depends only on the test data)."""
    bins = object_bins(results)
    bases = {parts[0] for (_, source, _, _) in results.stats if (parts := sources.objects_of(source))}
    levels = sorted(level for base in bases if (level := sources.floor_level(base)) is not None)
    return {
        level: [average([results.get(m, sources.objects(sources.floor(level), name), metric) for m in results.models])
                for name in bins]
        for level in levels
    }  # fmt: skip


def tolerances(results: Results, metric: str = "nsd") -> list[float]:
    """The tolerances of the model's ``<metric>@<τ>`` rows, smallest first."""
    found = {float(name.split("@")[1]) for (_, source, name, _) in results.stats
             if source == "model" and name.startswith(f"{metric}@")}  # fmt: skip
    return sorted(found)


def by_tolerance(results: Results, metric: str = "nsd") -> dict[Model, list[Stat | None]]:
    """Model -> its ``metric`` (nsd or bf1) at each of ``tolerances``."""
    taus = tolerances(results, metric)
    series = {}
    for model in model_rows(results):
        stats = [results.get(model, "model", f"{metric}@{tau:g}") for tau in taus]
        if any(stats):
            series[model] = stats
    return series


# ---- test-time shifts -------------------------------------------------------------------------------------------


def shifts(results: Results) -> list[str]:
    """The test-time shifts of the ``shift/<shift>`` rows, by kind then strength."""
    names = {sources.shift_of(source) for (_, source, _, _) in results.stats} - {None}
    return sorted(names, key=lambda name: (name.split(":")[0], float(name.split(":")[1])))


def susceptibility(results: Results, model: Model, shift: str) -> list[tuple[str, Stat]]:
    """(feature key, Hellinger distance) of ``model`` under ``shift``, in forward order."""
    found = []
    for key in feature_keys(model.depth, logits=False):
        stat = results.get(model, sources.susceptibility(shift, key), "hellinger")
        if stat is not None:
            found.append((key, stat))
    return found


# ---- found vs placed, layer by layer -----------------------------------------------------------------------------


@dataclass
class LayerObjects:
    """Per feature key of the models of one depth: the share of ground-truth objects its probe finds, the hd95 of
    the objects found and the spurious blobs (false positives) per image (``probe/<key>/objects/all``), beside the
    same numbers for the floor of the key's level."""

    depth: int
    keys: list[str]
    floor: dict[str, list[Stat | None]]  # metric -> per key, averaged over the models (the floor is the data's)
    probes: dict[str, dict[str, list[Stat | None]]]  # skip label (all, none) -> metric -> per key
    models: dict[str, Model]


LAYER_METRICS = ("detected", "hd95", "spurious")


def pooled(source: str) -> str:
    """The per-object source of ``source`` that pools every object size."""
    return sources.objects(source, sources.ALL_SIZES)


def layer_objects(results: Results) -> LayerObjects | None:
    """Found vs placed at the deepest depth whose all-skip or no-skip model has per-object probe rows."""
    for depth in sorted({m.depth for m in results.models}, reverse=True):
        keys = feature_keys(depth, logits=False)
        models = {m.skip_label: m for m in results.models if m.depth == depth and m.skip_label in ("all", "none")}
        models = {label: models[label] for label in ordered_labels(models)
                  if results.get(models[label], pooled(sources.probe("enc0")), "detected")}  # fmt: skip
        if not models:
            continue

        floor = {metric: [average([results.get(m, pooled(sources.floor(level_of(key))), metric)
                                   for m in models.values()]) for key in keys] for metric in LAYER_METRICS}  # fmt: skip
        probes = {label: {metric: [results.get(m, pooled(sources.probe(key)), metric) for key in keys]
                          for metric in LAYER_METRICS} for label, m in models.items()}  # fmt: skip
        return LayerObjects(depth, keys, floor, probes, models)
    return None
