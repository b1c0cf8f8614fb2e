"""What the numbers show, in a few sentences computed from them. Each sentence appears only when its data exist.

All numbers are hd95 of the class ``mean`` (in the results' unit: px, or the data's unit), averaged over runs
(seeds). Every comparison is a paired difference with its 95 % interval (``Results.compare``: the same test images
and, where both models have them, the same seeds, resampled jointly) and is called "not significant" where that
interval holds 0. A series over depth rises (falls) where its least-squares slope over depth and its
deepest-minus-shallowest change are both significant and of one sign (``depth_trend``); the steps are listed beside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from itertools import pairwise

from unetlab import sources
from unetlab.conventions import level_of
from unetlab.metrics.functional import DISTANCE_METRICS
from unetlab.report.collect import EMPTY_RATE, OBJECT_COUNT, Model, Results
from unetlab.report.intervals import Diff
from unetlab.report.queries import (
    LAYER_METRICS,
    LayerObjects,
    ablation_modes,
    average,
    floor_detection_by_size,
    layer_objects,
    object_bins,
    shapley,
)

TIE = 1e-9


# The unit of the distances in the sentences: the results' unit (``Results.unit``; ``px`` without a data.spacing),
# set for the duration of ``findings``.
UNIT: ContextVar[str] = ContextVar("unit", default="px")


def px(value: float) -> str:
    return f"{value:.2f} {UNIT.get()}"


def sign(value: float) -> str:
    """``+0.50``, ``−0.50`` (U+2212); a value that rounds to zero is ``+0.00``, never ``−0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}".replace("-", "−")


def signed(value: float) -> str:
    return f"{sign(value)} {UNIT.get()}"


def interval(diff: Diff, unit: str | None = None) -> str:
    """``−0.50 px [−0.56, −0.45]``; ``, not significant`` where the interval holds 0. A number that no per-image values
    give (a whole-split statistic) has no paired interval: significant only where the two numbers' intervals are
    apart."""
    unit = f" {UNIT.get()}" if unit is None else unit
    text = f"{sign(diff.value)}{unit}"
    if not (math.isnan(diff.low) or math.isnan(diff.high)):
        text += f" [{sign(diff.low)}, {sign(diff.high)}]"
    elif not diff.paired:
        text += " (a whole-split statistic: no paired interval; significant only where the intervals are apart)"
    if not diff.significant:
        text += ", not significant"
    return text


def significant(diff: Diff | None) -> bool:
    return diff is not None and diff.significant


def levels_text(levels: list[int]) -> str:
    names = [str(level) for level in levels]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def models_with(results: Results, label: str) -> dict[int, Model]:
    return {m.depth: m for m in results.models if m.skip_label == label}


def depth_series(results: Results, label: str, metric: str = "hd95") -> dict[int, Model]:
    """Depth -> the model with skip set ``label`` (``all``, ``none``) at that depth, where it has ``metric``."""
    models = sorted(models_with(results, label).items())
    return {d: m for d, m in models if results.value(m, "model", metric) is not None}


def slope(results: Results, models: dict[int, Model], metric: str = "hd95") -> Diff | None:
    """The least-squares slope of ``metric`` over depth (per added level) with its paired interval: a fixed linear
    combination of the models' means, ``sum_d w_d * y_d`` with ``w_d = (d - mean d) / sum (d - mean d)**2``,
    computed inside every resample (``Results.compare``), so the whole series is judged at once."""
    depths = sorted(models)
    if len(depths) < 2:
        return None
    centre = sum(depths) / len(depths)
    spread = sum((d - centre) ** 2 for d in depths)
    return results.compare([((d - centre) / spread, models[d], "model") for d in depths], metric)


def depth_trend(results: Results, label: str, metric: str = "hd95") -> str | None:
    """How ``metric`` of the ``label`` models changes from the shallowest to the deepest depth.

    The rule (docs/results-table.md): the series *rises* (or *falls*) with depth where its least-squares slope over
    depth is significant (its paired interval excludes 0) and the deepest-minus-shallowest change is significant with
    the same sign; a single step that is not significant on its own does not undo that. The steps are listed, with
    how many go the same way. Where slope or change is not significant the sentence says which, never "no trend"
    beside an interval that excludes 0."""
    models = depth_series(results, label, metric)
    trend = series_trend(results, models, metric)
    if trend is None:
        return None
    first, last = min(models), max(models)
    overall, per_level, rule = trend
    unit = f" {UNIT.get()}" if metric in DISTANCE_METRICS else ""
    value = (
        (lambda d: px(results.value(models[d], "model", metric)))
        if unit
        else (lambda d: f"{results.value(models[d], 'model', metric):.2f}")
    )
    who = {"none": "Without skips", "all": "With all skips"}.get(label, f"With skip set {label}")
    verb = {1: "rises", -1: "falls", 0: "changes"}[rule]
    sentence = (
        f"{who}, {metric} {verb} with depth, from {value(first)} at depth {first} to {value(last)} at depth {last} "
        f"({interval(overall, unit)}; slope {interval(per_level, unit)} per level)"
    )
    if rule == 0:
        why = [] if significant(overall) else ["the change from the shallowest to the deepest is not significant"]
        if not significant(per_level):
            why.append("the slope over depth is not significant")
        elif significant(overall) and (overall.value > 0) != (per_level.value > 0):
            why.append("slope and change go opposite ways")
        sentence += f": no monotone change shown ({'; '.join(why)})"
    steps = [(a, b, results.difference((models[b], "model"), (models[a], "model"), metric))
             for a, b in pairwise(sorted(models))]  # fmt: skip
    steps = [(a, b, diff) for a, b, diff in steps if diff is not None]
    if len(steps) > 1:
        parts = "; ".join(f"{a} to {b}: {interval(diff, unit)}" for a, b, diff in steps)
        sentence += f"; step by step {parts}"
        if rule:
            along = sum((diff.value > 0) == (rule > 0) for _, _, diff in steps)
            firm = sum(significant(diff) and (diff.value > 0) == (rule > 0) for _, _, diff in steps)
            sentence += f" ({along} of {len(steps)} steps go that way, {firm} of them significant on their own)"
    return sentence + "."


def series_trend(results: Results, models: dict[int, Model], metric: str = "hd95") -> tuple[Diff, Diff, int] | None:
    """Of a series over depth (``depth_series``): the deepest-minus-shallowest change, the slope per level (both
    paired) and ``trend_verdict`` of the two; None with fewer than two depths or without numbers."""
    if len(models) < 2:
        return None
    overall = results.difference((models[max(models)], "model"), (models[min(models)], "model"), metric)
    per_level = slope(results, models, metric)
    if overall is None or per_level is None:
        return None
    return overall, per_level, trend_verdict(overall, per_level)


def trend_verdict(overall: Diff, per_level: Diff) -> int:
    """+1 (rises), -1 (falls) where both the slope and the deepest-minus-shallowest change are significant and of
    one sign; 0 otherwise."""
    if significant(overall) and significant(per_level) and (overall.value > 0) == (per_level.value > 0):
        return 1 if overall.value > 0 else -1
    return 0


def no_skip_trend(results: Results) -> list[str]:
    """How hd95 and Dice of the no-skip models change with depth (``depth_trend``)."""
    return [sentence for metric in ("hd95", "dice") if (sentence := depth_trend(results, "none", metric))]


def all_vs_none(results: Results) -> str | None:
    """All-skip against no-skip hd95 at every depth that has both, paired; ASSD too at the deepest."""
    every, none = models_with(results, "all"), models_with(results, "none")
    parts, lower, higher, level = [], [], [], []
    deepest = None
    for depth in sorted(set(every) & set(none)):
        diff = results.difference((every[depth], "model"), (none[depth], "model"))
        if diff is None:
            continue
        deepest = depth
        with_skips, without = (results.value(m[depth], "model", "hd95") for m in (every, none))
        parts.append(f"depth {depth}: {px(with_skips)} vs {px(without)}, {interval(diff)}")
        (level if not diff.significant else lower if diff.value < 0 else higher).append(depth)
    if not parts:
        return None
    verdicts = []
    for depths, what in (
        (lower, "lower hd95"),
        (higher, "raise hd95"),
        (level, "make no significant difference"),
    ):
        if depths:
            where = "at every depth" if len(depths) == len(parts) > 1 else f"at depth {levels_text(depths)}"
            verdicts.append(f"{what} {where}")
    sentence = f"All skips against none (hd95, all − none, paired): {'; '.join(parts)}. The skips {', '.join(verdicts)}"
    assd = results.difference((every[deepest], "model"), (none[deepest], "model"), "assd")
    if assd is not None:
        sentence += f" (ASSD at depth {deepest}: {interval(assd)})"
    return sentence + "."


SINGLE_METRICS = ("hd95", "dice", "nsd")  # the metrics the best single skip is judged on (lower hd95, higher others)


def single_vs_none(results: Results) -> list[str]:
    """At each depth with single-skip models: each against the no-skip model on hd95, then the best single skip
    judged per metric (hd95, Dice, nsd and the detection of the smallest objects), each leader against the next best
    (paired; unpaired for detection): one level where every metric agrees, else the leader of each metric."""
    none = models_with(results, "none")
    sentences = []
    for depth in sorted(none):
        singles = {m.kept[0]: m for m in results.models
                   if m.depth == depth and len(m.kept) == 1 and m.skip_label != "all"}  # fmt: skip
        diffs = {level: results.difference((m, "model"), (none[depth], "model")) for level, m in singles.items()}
        diffs = {level: diff for level, diff in sorted(diffs.items()) if diff is not None}
        if not diffs:
            continue
        without = results.value(none[depth], "model", "hd95")
        parts = "; ".join(
            f"skip {level}: {px(results.value(singles[level], 'model', 'hd95'))}, {interval(diff)}"
            for level, diff in diffs.items()
        )
        sentence = f"At depth {depth}, each single skip against none ({px(without)}; single − none, paired): {parts}"
        if len(diffs) > 1:
            sentence += ". " + best_single(results, {level: singles[level] for level in diffs})
        sentences.append(sentence + ".")
    return sentences


def best_single(results: Results, singles: dict[int, Model]) -> str:
    """The best single skip per metric, each leader against the runner-up."""
    judged = [(metric, "model", metric) for metric in SINGLE_METRICS]  # (name, source, metric)
    bins = object_bins(results)
    if bins:  # the smallest size bin with objects in every model
        smallest = next((name for name in bins
                         if all(results.value(m, sources.objects(sources.MODEL, name), "detected") is not None
                                for m in singles.values())), None)  # fmt: skip
        if smallest is not None:
            name = f"detection of objects {smallest} {UNIT.get()} across"
            judged.append((name, sources.objects(sources.MODEL, smallest), "detected"))
    leaders = []
    for name, source, metric in judged:
        values = {level: results.value(m, source, metric) for level, m in singles.items()}
        if any(value is None for value in values.values()):
            continue
        lower = metric in DISTANCE_METRICS
        best, runner_up = sorted(values, key=lambda level: (values[level] if lower else -values[level], level))[:2]
        lead = results.difference((singles[best], source), (singles[runner_up], source), metric)
        unit = None if metric in DISTANCE_METRICS else ""
        leaders.append((name, best, runner_up, lead, unit))
    if not leaders:
        return ""
    levels = {best for _, best, _, _, _ in leaders}
    if len(levels) == 1:
        (level,) = levels
        names = levels_text([name for name, *_ in leaders])
        leads = "; ".join(f"{name} {interval(lead, unit)}" for name, _, runner_up, lead, unit in leaders if lead)
        return f"The skip at level {level} alone is the best single skip on {names} (ahead of the next best: {leads})"
    parts = "; ".join(
        f"{name}: level {best} (against level {runner_up}: {interval(lead, unit) if lead else 'no interval'})"
        for name, best, runner_up, lead, unit in leaders
    )
    return f"The best single skip depends on the metric: {parts}"


def floor_gap(diff: Diff, floor: str = "it") -> str:
    """Above or below the floor by the gap's sign; "at" it where the gap is not significant."""
    where = "at" if not diff.significant else "above" if diff.value > 0 else "below"
    return f"{where} {floor}"


def probe_gaps(results: Results) -> str | None:
    """Probe minus floor at the shallowest and the deepest level, for the deepest depth with probes and floors; the
    gaps of several skip sets are averaged inside each resample."""

    def terms(models: list[Model], key: str) -> list[tuple[float, Model, str]]:
        probe, floor = sources.probe(key), sources.floor(level_of(key))
        have = [m for m in models if results.get(m, probe, "hd95") and results.get(m, floor, "hd95")]
        return [(weight / len(have), m, source) for m in have for weight, source in ((1.0, probe), (-1.0, floor))]

    for depth in sorted({m.depth for m in results.models}, reverse=True):
        models = [m for m in results.models if m.depth == depth]
        shallow, deep = terms(models, "enc0"), terms(models, f"enc{depth}")
        shallow_gap, deep_gap = results.compare(shallow), results.compare(deep)
        if shallow_gap is None or deep_gap is None:
            continue
        count = len(shallow) // 2
        over = f" (averaged over {count} skip sets)" if count > 1 else ""
        sentence = (
            f"Linear probes at depth {depth}{over} sit {floor_gap(shallow_gap, 'the resolution floor')} at level 0 "
            f"(enc0, gap {interval(shallow_gap)}) and {floor_gap(deep_gap)} at the bottleneck, level {depth} "
            f"(enc{depth}, gap {interval(deep_gap)})"
        )
        decoder = {m.skip_label: results.difference((m, sources.probe("dec0")), (m, sources.floor(0))) for m in models
                   if m.skip_label in ("all", "none")}  # fmt: skip
        decoder = {label: diff for label, diff in sorted(decoder.items()) if diff is not None}
        if decoder:
            names = {"all": "with all skips", "none": "without skips"}
            parts = [f"{floor_gap(diff)} {names[label]} (gap {interval(diff)})" for label, diff in decoder.items()]
            sentence += f"; the last decoder features (dec0) sit {' and '.join(parts)}"
        return sentence + " (gap = probe hd95 − floor hd95, paired)."
    return None


def encoder_probes_by_skips(results: Results) -> str | None:
    """At the deepest depth with both: the encoder keys whose probe reads worse (higher hd95, paired) in the all-skip
    model than in the no-skip one, with the likely reason stated as such."""
    every, none = models_with(results, "all"), models_with(results, "none")
    for depth in sorted(set(every) & set(none), reverse=True):
        keys = [f"enc{level}" for level in range(depth + 1)]
        diffs = {key: results.difference((every[depth], sources.probe(key)), (none[depth], sources.probe(key)))
                 for key in keys}  # fmt: skip
        diffs = {key: diff for key, diff in diffs.items() if diff is not None}
        if not diffs:
            continue
        worse = {key: diff for key, diff in diffs.items() if significant(diff) and diff.value > 0}
        if not worse:
            return None
        parts = "; ".join(f"{key}: {interval(diff)}" for key, diff in worse.items())
        return (
            f"At depth {depth} the encoder's probes read worse in the all-skip U-Net than in the no-skip one "
            f"(probe hd95, all − none, paired) at {parts}. A likely reason, consistent with these numbers but not "
            "tested by them: without skips everything the decoder segments must pass through the deep encoder "
            "levels, so their features have to hold a map a linear probe can read; with skips the decoder takes the "
            "fine map from the skips, and the deep encoder features need not hold one."
        )
    return None


def found_vs_placed(results: Results) -> list[str]:
    """Per model (all skips, no skips) at the deepest depth with per-object probe rows (``layer_sentence``)."""
    layers = layer_objects(results)
    if layers is None:
        return []
    return [sentence for label in layers.probes if (sentence := layer_sentence(layers, label))]


def layer_sentence(layers: LayerObjects, label: str) -> str | None:
    """Key by key against the floor of the key's level: the share of objects the probe finds, the hd95 of the found
    ones and the spurious blobs it predicts where there is no object, for enc0, the bottleneck and dec0; then the key
    that finds the smallest share of what its floor finds (objects *missed*), the key whose found objects sit
    furthest above the floor's hd95 (*misplaced*) and the key with the most spurious blobs (*invented*)."""
    found, placed, spurious = (layers.probes[label][metric] for metric in LAYER_METRICS)
    floor_found, floor_placed, _ = (layers.floor[metric] for metric in LAYER_METRICS)
    series = (found, placed, spurious, floor_found, floor_placed)
    usable = [i for i in range(len(layers.keys)) if all(x[i] is not None and not math.isnan(x[i].mean) for x in series)]
    if not usable:
        return None

    def row(i: int) -> str:
        return (
            f"{layers.keys[i]} finds {rate_with_interval(found[i])} (floor {percent(floor_found[i].mean)}), "
            f"places them within {px(placed[i].mean)} (floor {px(floor_placed[i].mean)}) and predicts "
            f"{spurious[i].mean:.2f} spurious blobs per image"
        )

    missed = min(usable, key=lambda i: found[i].mean / max(floor_found[i].mean, TIE))
    misplaced = max(usable, key=lambda i: placed[i].mean - floor_placed[i].mean)
    invented = max(usable, key=lambda i: spurious[i].mean)
    shown = [layers.keys.index(key) for key in ("enc0", f"enc{layers.depth}", "dec0") if key in layers.keys]
    sentence = (
        f"Found vs placed in {layers.models[label].described} (linear probes, object by object): "
        + "; ".join(row(i) for i in shown if i in usable)
        + f". Most objects missed, against what the floor finds: {layers.keys[missed]}; found objects placed "
        f"furthest above the floor: {layers.keys[misplaced]}; most spurious blobs: {layers.keys[invented]}"
    )
    deep = {i for i in usable if level_of(layers.keys[i]) >= layers.depth - 1}  # the two coarsest levels
    if layers.keys[invented] == "enc0" and missed in deep and misplaced in deep:
        sentence += (
            ": the shallowest layer invents objects where there are none (it sees too little to tell object from "
            "background), the deep ones miss and misplace them (they see whole objects through a coarse grid)"
        )
    return sentence + "."


def percent(value: float) -> str:
    return f"{value:.0%}"


def rate_with_interval(stat) -> str:
    """``37% [16%, 64%]``: a rate with its interval (without, where it has none)."""
    bounds = "" if math.isnan(stat.low) else f" [{percent(stat.low)}, {percent(stat.high)}]"
    return f"{percent(stat.mean)}{bounds}"


def vanishing_floor(results: Results, threshold: float = 0.05) -> str | None:
    """A caution where the resolution floor itself is empty in many test images.

    Averaged down by ``2**level``, an object smaller than about half a cell vanishes at the 0.5 threshold; such
    images count at the image diagonal, so the floor's distances there measure vanished objects, and a probe whose
    coarse blob keeps the object scores *below* the floor. Rates (and their intervals) are averaged over the models
    of the grid (the floor is the same for all of them).
    """
    levels = sorted({level for (_, source, metric, _) in results.stats
                     if metric == EMPTY_RATE and (level := sources.floor_level(source)) is not None})  # fmt: skip
    rates = {
        level: average([results.get(m, sources.floor(level), EMPTY_RATE) for m in results.models]) for level in levels
    }
    high = [level for level, rate in rates.items() if rate is not None and rate.mean >= threshold]
    if not high:
        return None

    def rate(level: int) -> str:
        return rate_with_interval(rates[level])

    first, deepest = high[0], high[-1]
    if first == deepest:
        share = f"in {rate(first)} of test images at level {first}"
    else:
        share = f"from {rate(first)} of test images at level {first} to {rate(deepest)} at level {deepest}"
    return (
        f"Caution: the resolution floor is empty {share} (objects smaller than about half a "
        f"{2**first}×{2**first}-px cell vanish when averaged down); those images count at the image diagonal, "
        "so at these levels the floor measures vanished objects rather than boundary placement, and a probe that "
        "keeps a coarse blob can score below it."
    )


def largest_shapley(results: Results, mode: str | None = None) -> str | None:
    """Which skip level lowers hd95 most (most negative Shapley value) in the all-skip models, in ``mode`` (default:
    the leading one), and by how much it leads the next level (paired: the same model, seeds and images)."""
    modes = ablation_modes(results)
    if not modes:
        return None
    mode = mode or modes[0]
    per_model = [(m, values) for m, values in shapley(results, mode, "hd95") if len(values) > 1]
    if not per_model:
        return None
    every = [(m, values) for m, values in per_model if m.skip_label == "all"] or per_model

    def source(level: int) -> str:
        return sources.shapley(mode, level)

    def ranked(values: dict) -> list[int]:
        return sorted(values, key=lambda level: (values[level].mean, level))

    def lead(model: Model, values: dict) -> Diff | None:
        best, runner_up = ranked(values)[:2]
        return results.difference((model, source(best)), (model, source(runner_up)))

    model, values = max(every, key=lambda item: (item[0].depth, len(item[1])))
    total = results.compare([(1.0, model, source(level)) for level in values])
    where = f"Shapley attribution ({mode} ablation) in {model.described}"
    order = ranked(values)
    best, runner_up = order[0], order[1]
    phi = results.compare([(1.0, model, source(best))])
    if total is None or phi is None:
        return None
    ahead = lead(model, values)
    if values[runner_up].mean - values[best].mean <= TIE:
        sentence = f"{where}: no skip level has a lower φ for hd95 than level {best} (φ = {interval(phi)})"
    elif values[best].mean < -TIE:
        sentence = f"{where}: the skip at level {best} lowers hd95 most, φ = {interval(phi)}"
    else:
        sentence = f"{where}: no skip lowers hd95; the skip at level {best} raises it least, φ = {interval(phi)}"
    sentence += f", of the total {interval(total)} (v(all kept) − v(none))"
    none_kept = sources.ablation(mode, tuple(values))
    share, rate = empty_share(results, model, none_kept), results.get(model, none_kept, EMPTY_RATE)
    if share is not None and rate is not None and rate.mean > TIE:
        sentence += (
            f"; with every skip {mode}-ablated the model leaves prediction or truth empty in "
            f"{rate_with_interval(rate)} of test images, which make {percent(share)} of v(none)'s hd95"
        )
    if ahead is not None:
        sentence += f"; ahead of level {runner_up} by {interval(ahead)}"
    if len(every) > 1:
        firsts = [(m, v) for m, v in every if ranked(v)[0] == best]
        firm = sum(significant(lead(m, v)) for m, v in firsts)
        which = "all-skip models" if model.skip_label == "all" else "models"
        sentence += (
            f"; level {best} has the lowest φ in {len(firsts)} of the {len(every)} {which} with several kept skips, "
            f"significantly ahead of the next level in {firm}"
        )
    return sentence + "."


def shapley_by_mode(results: Results) -> list[str]:
    """``largest_shapley`` for every mode present, the leading mode (lowpass:1) first."""
    return [sentence for mode in ablation_modes(results) if (sentence := largest_shapley(results, mode))]


def drop_one(results: Results) -> list[str]:
    """At each depth whose grid holds every all-but-one skip set: which dropped skip hurts least; the ranking is firm
    only where the margin to the next best (paired) is significant. (Wilm et al.'s claim that dropping the level-0
    skip is best gets its verdict in ``published.py``.)"""
    sentences = []
    by_key = {(m.depth, m.kept): m for m in results.models}
    for depth in sorted({m.depth for m in results.models}):
        if depth < 2:
            continue
        levels = list(range(depth))
        models = {
            dropped: by_key.get((depth, tuple(level for level in levels if level != dropped))) for dropped in levels
        }
        hd95 = {dropped: results.value(m, "model", "hd95") for dropped, m in models.items() if m is not None}
        hd95 = {dropped: value for dropped, value in hd95.items() if value is not None}
        if len(hd95) < depth:
            continue
        least = min(hd95.values())
        best = [level for level, value in hd95.items() if value <= least + TIE]
        others = "; ".join(f"without level {level}: {px(value)}" for level, value in hd95.items())
        full = by_key.get((depth, tuple(levels)))
        full_value = None if full is None else results.value(full, "model", "hd95")
        reference = f"; all skips: {px(full_value)}" if full_value is not None else ""
        sentence = (
            f"At depth {depth}, among the models trained with all skips but one, dropping the skip at level "
            f"{levels_text(best)} hurts least (hd95 {others}{reference})"
        )
        verdict = "whether that agrees with Wilm et al. 2024 is tested under Published findings"
        runner_up = min((level for level in hd95 if level not in best), key=hd95.get, default=None)
        if runner_up is not None:
            margin = results.difference((models[best[0]], "model"), (models[runner_up], "model"))
            if margin is not None:
                verdict += f"; the margin to the next best (without level {runner_up}) is {interval(margin)}"
                if not significant(margin):
                    verdict += ", so the ranking is not firm"
        sentences.append(f"{sentence}; {verdict}.")
    return sentences


def single_skip_ablation(results: Results, mode: str | None = None) -> str | None:
    """In the deepest all-skip model, which single skip can be ablated at test time (``mode``, default the leading
    one) at the least cost; each cost is paired against the intact model, the spread dearest − cheapest too."""
    modes = ablation_modes(results, prefix="ablate")
    if not modes:
        return None
    mode = mode or modes[0]
    for depth, model in sorted(models_with(results, "all").items(), reverse=True):
        costs = {level: results.difference((model, sources.ablation(mode, (level,))), (model, sources.MODEL))
                 for level in model.kept}  # fmt: skip
        if depth < 2 or any(cost is None for cost in costs.values()):
            continue
        order = sorted(costs, key=lambda level: (costs[level].value, level))
        cheapest, dearest = order[0], order[-1]
        where = f"Ablating one skip at test time ({mode}) in {model.described}"
        if costs[dearest].value - costs[cheapest].value <= TIE:
            return f"{where} costs the same at every level (hd95 {interval(costs[cheapest])})."
        spread = results.difference(
            (model, sources.ablation(mode, (dearest,))), (model, sources.ablation(mode, (cheapest,)))
        )
        return (
            f"{where} costs least at level {cheapest} (hd95 {interval(costs[cheapest])}) and most at level {dearest} "
            f"({interval(costs[dearest])}; the difference of the two, paired: {interval(spread)})."
        )
    return None


def ablation_by_mode(results: Results) -> list[str]:
    """``single_skip_ablation`` for every mode present, the leading mode first."""
    modes = ablation_modes(results, prefix="ablate")
    return [sentence for mode in modes if (sentence := single_skip_ablation(results, mode))]


EMPTY_SHARE = 1 / 3  # a distance caution fires where at least this share of the distance comes from empty images


def empty_share(results: Results, model: Model, source: str = "model", metric: str = "hd95") -> float | None:
    """The share of ``metric``'s mean that comes from images where exactly one of prediction and truth is empty.

    Such images count at the image diagonal, the others at their distance, and images with both masks empty at 0,
    so ``mean = e * diagonal + (1 - e) * nonempty`` with ``e`` the empty rate and ``nonempty`` the mean over the
    images with both masks present: the part from empty images is ``1 - (1 - e) * nonempty / mean`` (exact for one
    foreground class; for several, the rates and means are averaged over the classes first)."""
    mean = results.value(model, source, metric)
    rate = results.value(model, source, EMPTY_RATE)
    nonempty = results.value(model, source, metric + "_nonempty")
    if mean is None or rate is None or mean <= TIE:
        return None
    if rate <= TIE:
        return 0.0
    if nonempty is None:  # every image had an empty mask
        return 1.0
    return min(max(1 - (1 - rate) * nonempty / mean, 0.0), 1.0)


def empty_predictions(results: Results) -> str | None:
    """A caution where a third or more of a model's hd95 comes from images with an empty prediction or truth (counted
    at the image diagonal): its distance then measures missed objects more than boundary placement."""
    shares = {model: empty_share(results, model) for model in results.models}
    heavy = {model: share for model, share in shares.items() if share is not None and share >= EMPTY_SHARE}
    if not heavy:
        return None

    def placement(model: Model) -> str:
        nonempty = results.value(model, "model", "hd95_nonempty")
        return "no image with both present" if nonempty is None else f"{px(nonempty)} where both are present"

    parts = [
        f"{model.described}: {percent(share)} of its hd95 ({px(results.value(model, 'model', 'hd95'))}; empty in "
        f"{rate_with_interval(results.get(model, 'model', EMPTY_RATE))} of test images, {placement(model)})"
        for model, share in sorted(heavy.items(), key=lambda item: -item[1])
    ]
    return (
        f"Caution: in {len(heavy)} of {len(results.models)} models a third or more of hd95 comes from test images "
        f"where prediction or ground truth is empty, counted at the image diagonal: {'; '.join(parts)}. Their hd95 "
        "measures missed objects more than boundary placement; the non-empty distance beside it measures placement "
        "alone. (In the other models that share is under a third.)"
    )


def floor_object_sizes(results: Results) -> str | None:
    """Which object sizes each level's resolution alone loses. The rule: a level *loses* a size where its floor
    detects under half of those objects with the whole 95 % interval below 50 %; sizes detected under half of the
    time whose interval reaches 50 % are named apart, as not shown to be lost."""
    bins = object_bins(results)
    lost, unsure = [], []
    for level, stats in floor_detection_by_size(results).items():
        counts = floor_object_counts(results, level)
        below = [(name, stat, count) for name, stat, count in zip(bins, stats, counts, strict=True)
                 if stat is not None and not math.isnan(stat.high) and stat.mean < 0.5]  # fmt: skip

        def sizes(items) -> str:
            return ", ".join(
                f"objects {name} {UNIT.get()} across ({rate_with_interval(stat)} of {count} detected)"
                for name, stat, count in items
            )

        firm = [item for item in below if item[1].high < 0.5]
        loose = [item for item in below if item[1].high >= 0.5]
        if firm:
            lost.append(f"level {level} loses {sizes(firm)}")
        if loose:
            unsure.append(f"level {level}: {sizes(loose)}")
    if not lost and not unsure:
        return None
    sentence = (
        "By resolution alone (the floor: the best map a level allows), a level loses an object size where its floor "
        "detects under half of those objects, the whole 95 % interval below 50 % (an object is detected when "
        "matched with IoU ≥ 0.5)"
    )
    sentence += ": " + "; ".join(lost) if lost else ": no level loses a size by that rule"
    if unsure:
        sentence += ". Detected under half of the time but not shown to be lost (the interval reaches 50 %): " + (
            "; ".join(unsure)
        )
    return (
        sentence + ". The floor is fit to a segmentation loss, not to detection, so this is what each level's "
        "resolution allows in practice rather than a proof."
    )


def floor_object_counts(results: Results, level: int) -> list[str]:
    """The ground-truth objects in each size bin (``n`` of the floor's per-object rows, the same for every model)."""
    out = []
    for name in object_bins(results):
        counts = [results.value(m, sources.objects(sources.floor(level), name), OBJECT_COUNT) for m in results.models]
        counts = [count for count in counts if count is not None]
        out.append(f"{counts[0]:.0f}" if counts else "?")
    return out


def objects_without_skips(results: Results) -> str | None:
    """At the deepest depth with both an all-skip and a no-skip model: the object sizes whose detection rate the skips
    change, each with the paired difference (all − none, from the per-image object sums) where it is significant."""
    every, none = models_with(results, "all"), models_with(results, "none")
    depths = sorted(set(every) & set(none), reverse=True)
    bins = object_bins(results)
    for depth in depths:
        parts = []
        for name in bins:
            source = sources.objects(sources.MODEL, name)
            diff = results.difference((every[depth], source), (none[depth], source), "detected")
            if significant(diff):
                with_all = results.get(every[depth], source, "detected")
                without = results.get(none[depth], source, "detected")
                parts.append(
                    f"{name} {UNIT.get()}: {rate_with_interval(without)} without skips against "
                    f"{rate_with_interval(with_all)} with all ({interval(diff, unit='')})"
                )
        if parts:
            return (
                f"At depth {depth} the skips change which objects are found (detected at IoU ≥ 0.5; the sizes where "
                f"the paired difference, all − none, is significant): " + "; ".join(parts) + "."
            )
    return None


FINDINGS: list[Callable[[Results], str | list[str] | None]] = [
    no_skip_trend,
    all_vs_none,
    single_vs_none,
    probe_gaps,
    found_vs_placed,
    encoder_probes_by_skips,
    vanishing_floor,
    floor_object_sizes,
    objects_without_skips,
    shapley_by_mode,
    drop_one,
    ablation_by_mode,
    empty_predictions,
]


def findings(results: Results) -> list[str]:
    """The sentences whose data exist, in a fixed order; distances in ``results.unit``."""
    out = []
    token = UNIT.set(results.unit)
    try:
        for finding in FINDINGS:
            result = finding(results)
            if isinstance(result, list):
                out += result
            elif result:
                out.append(result)
    finally:
        UNIT.reset(token)
    return out
