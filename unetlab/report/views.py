"""The numbers behind each plot: series for the figures and the same numbers as tables.

All values are the class ``mean`` (mean over foreground classes) averaged over runs; distances in px.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from unetlab.conventions import feature_keys, level_of
from unetlab.metrics.functional import DISTANCE_METRICS, METRIC_NAMES
from unetlab.report.collect import Model, Results, Stat, skip_order

BOUNDARY_METRICS = ("hd95", "assd", "nsd", "bf1")
# Axis and column labels: the distances in px, nsd a fraction of the boundary, the rest as they are named.
METRIC_LABELS = {name: f"{name} (px)" if name in DISTANCE_METRICS else name for name in METRIC_NAMES}
METRIC_LABELS["nsd"] = "nsd (fraction)"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def fmt(value: Stat | float | None, digits: int = 2) -> str:
    """``1.00 ± 0.10`` (mean ± std over runs), ``1.00`` for one run, ``–`` where there is no number."""
    if value is None:
        return "–"
    if isinstance(value, Stat):
        if math.isnan(value.mean):
            return "–"
        if math.isnan(value.std):
            return f"{value.mean:.{digits}f}"
        return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


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
    floor: list[float | None]  # averaged over the models of this depth (same test data, same floor)
    probes: dict[str, list[Stat | None]]  # skip label -> stat per key
    left_out: list[str]  # skip labels not drawn (too many models at this depth)


MAX_PROBE_LINES = 4


def probe_panels(results: Results, metric: str = "hd95") -> list[ProbePanel]:
    """One panel per depth that has probe rows; every skip set if few, else only ``all`` and ``none``."""
    panels = []
    for depth in sorted({m.depth for m in results.models}):
        models = [m for m in results.models if m.depth == depth]
        keys = feature_keys(depth, logits=False)
        with_probes = [m for m in models if any(results.get(m, f"probe/{k}", metric) for k in keys)]
        if not with_probes:
            continue
        shown = with_probes
        if len(with_probes) > MAX_PROBE_LINES:
            shown = [m for m in with_probes if m.skip_label in ("all", "none")] or with_probes[:MAX_PROBE_LINES]
        floor = []
        for key in keys:
            floors = [results.value(m, f"floor/{level_of(key)}", metric) for m in models]
            floors = [f for f in floors if f is not None]
            floor.append(sum(floors) / len(floors) if floors else None)
        probes = {m.skip_label: [results.get(m, f"probe/{k}", metric) for k in keys] for m in shown}
        left_out = [m.skip_label for m in with_probes if m not in shown]
        panels.append(ProbePanel(depth, keys, floor, probes, left_out))
    return panels


def ablation_modes(results: Results, prefix: str = "shapley") -> list[str]:
    """Test-time ablation modes present (``mean`` first)."""
    modes = {source.split("/")[1] for (_, source, _, _) in results.stats if source.startswith(f"{prefix}/")}
    return sorted(modes, key=lambda mode: (mode != "mean", mode))


def shapley(results: Results, mode: str, metric: str) -> list[tuple[Model, dict[int, Stat]]]:
    """(model, {level: Shapley value}) for the models with kept skips that have Shapley rows."""
    out = []
    for model in results.models:
        values = {level: results.get(model, f"shapley/{mode}/{level}", metric) for level in model.kept}
        values = {level: stat for level, stat in values.items() if stat is not None and not math.isnan(stat.mean)}
        if values:
            out.append((model, values))
    return out


# ---- tables -----------------------------------------------------------------------------------------------


def model_rows(results: Results) -> list[Model]:
    return sorted(results.models, key=lambda m: (skip_order(m.skip_label), m.depth))


def metric_table(results: Results, title: str, metrics: tuple[str, ...]) -> Table | None:
    rows = []
    for model in model_rows(results):
        stats = [results.get(model, "model", metric) for metric in metrics]
        if any(stats):
            runs = max(s.runs for s in stats if s)
            rows.append([str(model.depth), model.skip_label, model.skips, str(runs), *map(fmt, stats)])
    if not rows:
        return None
    return Table(title, ["depth", "skip set", "kept levels", "runs", *(METRIC_LABELS[m] for m in metrics)], rows)


def params_table(results: Results) -> Table:
    rows = [[str(m.depth), m.skip_label, m.skips, f"{results.params[m]:,}"] for m in model_rows(results)]
    return Table("Parameter counts", ["depth", "skip set", "kept levels", "parameters"], rows)


def probe_table(results: Results, metric: str = "hd95") -> Table | None:
    """A row per (model, level): the floor, the encoder and decoder probes at that level, and their gaps."""
    rows = []
    for model in model_rows(results):
        for level in range(model.depth + 1):
            floor = results.get(model, f"floor/{level}", metric)
            enc = results.get(model, f"probe/enc{level}", metric)
            dec = results.get(model, f"probe/dec{level}", metric) if level < model.depth else None
            if floor is None and enc is None and dec is None:
                continue
            gaps = [None if p is None or floor is None else p.mean - floor.mean for p in (enc, dec)]
            name = f"{level} (bottleneck)" if level == model.depth else str(level)
            rows.append([str(model.depth), model.skip_label, name, *map(fmt, (floor, enc, dec, *gaps))])
    if not rows:
        return None
    unit = " (px)" if metric in DISTANCE_METRICS else ""
    columns = ["depth", "skip set", "level", f"floor{unit}", f"probe enc{unit}", f"probe dec{unit}",
               "gap enc", "gap dec"]  # fmt: skip
    return Table(f"Probe {metric} by level and the resolution floor (gap = probe − floor)", columns, rows)


def shapley_table(results: Results, metrics: tuple[str, ...] = ("hd95", "dice")) -> Table | None:
    rows = []
    for mode in ablation_modes(results):
        per_metric = {metric: dict(shapley(results, mode, metric)) for metric in metrics}
        models = sorted({m for values in per_metric.values() for m in values}, key=results.models.index)
        for model in models:
            for level in model.kept:
                stats = [per_metric[metric].get(model, {}).get(level) for metric in metrics]
                rows.append([str(model.depth), model.skip_label, mode, str(level), *map(fmt, stats)])
    if not rows:
        return None
    columns = ["depth", "skip set", "ablation", "level", *(f"φ {METRIC_LABELS[m]}" for m in metrics)]
    return Table("Shapley value of each skip level", columns, rows)
