"""What the numbers show, in a few sentences computed from them. Each sentence appears only when its data exist.

All numbers are hd95 of the class ``mean`` (in the results' unit: px, or the data's unit), averaged over runs
(seeds). Every comparison is a paired difference with its 95 % interval (``Results.compare``: the same test images
and, where both models have them, the same seeds, resampled jointly) and is called "not significant" where that
interval holds 0. A trend is called one only when each of its steps is significant and they all go the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from itertools import pairwise

from unetlab.conventions import level_of
from unetlab.report.collect import EMPTY_RATE, Model, Results
from unetlab.report.intervals import Diff
from unetlab.report.views import (
    OBJECTS_PREFIX,
    ablation_modes,
    average,
    floor_detection_by_size,
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
    """``−0.50 px [−0.56, −0.45]``; ``, not significant`` where the interval holds 0; without per-image values
    (older runs) no paired interval, and significant only where the two models' own intervals do not overlap."""
    unit = f" {UNIT.get()}" if unit is None else unit
    text = f"{sign(diff.value)}{unit}"
    if not (math.isnan(diff.low) or math.isnan(diff.high)):
        text += f" [{sign(diff.low)}, {sign(diff.high)}]"
    else:
        text += " (unpaired: no per-image values)"
    if diff.significant is False:
        text += ", not significant"
    elif diff.significant is None:
        text += ", significance undecided"
    return text


def significant(diff: Diff | None) -> bool:
    return diff is not None and diff.significant is True


def trend(diffs: list[Diff]) -> int:
    """+1 where a series rises with every step, -1 where it falls with every step, 0 otherwise: a trend needs two or
    more steps, each of them significant and all of the same sign."""
    if len(diffs) < 2 or not all(significant(diff) for diff in diffs):
        return 0
    signs = {diff.value > 0 for diff in diffs}
    return 0 if len(signs) > 1 else 1 if signs.pop() else -1


def levels_text(levels: list[int]) -> str:
    names = [str(level) for level in levels]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def describe(model: Model) -> str:
    """``the depth-3 all-skip U-Net``, ``the depth-3 U-Net with skips 0,2``."""
    if model.skip_label == "all":
        return f"the depth-{model.depth} all-skip U-Net"
    if model.skip_label == "none":
        return f"the depth-{model.depth} no-skip U-Net"
    return f"the depth-{model.depth} U-Net with skips {model.skips}"


def models_with(results: Results, label: str) -> dict[int, Model]:
    return {m.depth: m for m in results.models if m.skip_label == label}


def no_skip_steps(results: Results) -> list[tuple[int, int, Diff]]:
    """(depth d, the next depth, hd95 at the next depth − hd95 at d) for the no-skip models, paired."""
    models = sorted(models_with(results, "none").items())
    models = [(d, m) for d, m in models if results.value(m, "model", "hd95") is not None]
    steps = [(a, b, results.difference((mb, "model"), (ma, "model"))) for (a, ma), (b, mb) in pairwise(models)]
    return [(a, b, diff) for a, b, diff in steps if diff is not None]


def no_skip_trend(results: Results) -> str | None:
    """How no-skip hd95 changes from the shallowest to the deepest depth, step by step; a trend only where every
    step is significant."""
    models = {d: m for d, m in models_with(results, "none").items() if results.value(m, "model", "hd95") is not None}
    steps = no_skip_steps(results)
    if not steps:
        return None
    first, last = min(models), max(models)
    overall = results.difference((models[last], "model"), (models[first], "model"))
    verb = "changes" if not significant(overall) else "rises" if overall.value > 0 else "falls"
    sentence = (
        f"Without skips, hd95 {verb} from {px(results.value(models[first], 'model', 'hd95'))} at depth {first} to "
        f"{px(results.value(models[last], 'model', 'hd95'))} at depth {last} ({interval(overall)})"
    )
    if len(steps) < 2:
        return sentence + "."
    parts = "; ".join(f"depth {a} to {b}: {interval(diff)}" for a, b, diff in steps)
    direction = trend([diff for _, _, diff in steps])
    if direction:
        verdict = f"a trend: it {'rises' if direction > 0 else 'falls'} with every added level, each step significant"
    else:
        weak = [f"{a} to {b}" for a, b, diff in steps if not significant(diff)]
        undecided = any(diff.significant is None for _, _, diff in steps)
        verdict = (
            f"no trend: the step{'s' if len(weak) > 1 else ''} from depth {', '.join(weak)} "
            f"{'are' if len(weak) > 1 else 'is'} {'not shown to be significant' if undecided else 'not significant'}"
            if weak
            else "no trend: its significant steps go both ways"
        )
    return f"{sentence}; step by step {parts}: {verdict}."


def all_vs_none(results: Results) -> str | None:
    """All-skip against no-skip hd95 at every depth that has both, paired; ASSD too at the deepest."""
    every, none = models_with(results, "all"), models_with(results, "none")
    parts, lower, higher, level, undecided = [], [], [], [], []
    deepest = None
    for depth in sorted(set(every) & set(none)):
        diff = results.difference((every[depth], "model"), (none[depth], "model"))
        if diff is None:
            continue
        deepest = depth
        with_skips, without = (results.value(m[depth], "model", "hd95") for m in (every, none))
        parts.append(f"depth {depth}: {px(with_skips)} vs {px(without)}, {interval(diff)}")
        if diff.significant is None:
            undecided.append(depth)
        else:
            (level if not diff.significant else lower if diff.value < 0 else higher).append(depth)
    if not parts:
        return None
    verdicts = []
    for depths, what in (
        (lower, "lower hd95"),
        (higher, "raise hd95"),
        (level, "make no significant difference"),
        (undecided, "leave it undecided"),
    ):
        if depths:
            where = "at every depth" if len(depths) == len(parts) > 1 else f"at depth {levels_text(depths)}"
            verdicts.append(f"{what} {where}")
    sentence = f"All skips against none (hd95, all − none, paired): {'; '.join(parts)}. The skips {', '.join(verdicts)}"
    assd = results.difference((every[deepest], "model"), (none[deepest], "model"), "assd")
    if assd is not None:
        sentence += f" (ASSD at depth {deepest}: {interval(assd)})"
    return sentence + "."


def single_vs_none(results: Results) -> list[str]:
    """At each depth with single-skip models: each against the no-skip model, and the best against the next best."""
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
            best, runner_up = sorted(diffs, key=lambda level: diffs[level].value)[:2]
            lead = results.difference((singles[best], "model"), (singles[runner_up], "model"))
            sentence += (
                f". The skip at level {best} alone gives the lowest hd95, against level {runner_up}: {interval(lead)}"
            )
        sentences.append(sentence + ".")
    return sentences


def floor_gap(diff: Diff, floor: str = "it") -> str:
    """Above or below the floor by the gap's sign; "at" it where the gap is not significant."""
    where = "at" if diff.significant is False else "above" if diff.value > 0 else "below"
    return f"{where} {floor}"


def probe_gaps(results: Results) -> str | None:
    """Probe minus floor at the shallowest and the deepest level, for the deepest depth with probes and floors; the
    gaps of several skip sets are averaged inside each resample."""

    def terms(models: list[Model], key: str) -> list[tuple[float, Model, str]]:
        probe, floor = f"probe/{key}", f"floor/{level_of(key)}"
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
        decoder = {m.skip_label: results.difference((m, "probe/dec0"), (m, "floor/0")) for m in models
                   if m.skip_label in ("all", "none")}  # fmt: skip
        decoder = {label: diff for label, diff in sorted(decoder.items()) if diff is not None}
        if decoder:
            names = {"all": "with all skips", "none": "without skips"}
            parts = [f"{floor_gap(diff)} {names[label]} (gap {interval(diff)})" for label, diff in decoder.items()]
            sentence += f"; the last decoder features (dec0) sit {' and '.join(parts)}"
        return sentence + " (gap = probe hd95 − floor hd95, paired)."
    return None


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
    levels = sorted({int(source.split("/", 1)[1]) for (_, source, metric, _) in results.stats
                     if source.startswith("floor/") and metric == EMPTY_RATE})  # fmt: skip
    rates = {level: average([results.get(m, f"floor/{level}", EMPTY_RATE) for m in results.models]) for level in levels}
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
        return f"shapley/{mode}/{level}"

    def ranked(values: dict) -> list[int]:
        return sorted(values, key=lambda level: (values[level].mean, level))

    def lead(model: Model, values: dict) -> Diff | None:
        best, runner_up = ranked(values)[:2]
        return results.difference((model, source(best)), (model, source(runner_up)))

    model, values = max(every, key=lambda item: (item[0].depth, len(item[1])))
    total = results.compare([(1.0, model, source(level)) for level in values])
    where = f"Shapley attribution ({mode} ablation) in {describe(model)}"
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
        costs = {level: results.difference((model, f"ablate/{mode}/{level}"), (model, "model")) for level in model.kept}
        if depth < 2 or any(cost is None for cost in costs.values()):
            continue
        order = sorted(costs, key=lambda level: (costs[level].value, level))
        cheapest, dearest = order[0], order[-1]
        where = f"Ablating one skip at test time ({mode}) in {describe(model)}"
        if costs[dearest].value - costs[cheapest].value <= TIE:
            return f"{where} costs the same at every level (hd95 {interval(costs[cheapest])})."
        spread = results.difference((model, f"ablate/{mode}/{dearest}"), (model, f"ablate/{mode}/{cheapest}"))
        return (
            f"{where} costs least at level {cheapest} (hd95 {interval(costs[cheapest])}) and most at level {dearest} "
            f"({interval(costs[dearest])}; the difference of the two, paired: {interval(spread)})."
        )
    return None


def ablation_by_mode(results: Results) -> list[str]:
    """``single_skip_ablation`` for every mode present, the leading mode first."""
    modes = ablation_modes(results, prefix="ablate")
    return [sentence for mode in modes if (sentence := single_skip_ablation(results, mode))]


def empty_predictions(results: Results) -> str | None:
    """A caution where models left objects out (or hallucinated them): their distances are the image diagonal."""
    rates = {model: stat for model in results.models if (stat := results.get(model, "model", EMPTY_RATE))}
    rates = {model: stat for model, stat in rates.items() if stat.mean > TIE}
    if not rates:
        return None
    worst = max(rates, key=lambda model: rates[model].mean)
    return (
        f"Caution: in {len(rates)} of {len(results.models)} models, prediction or ground truth of a class was empty "
        f"in some test images (up to {rate_with_interval(rates[worst])}, {describe(worst)}); those images count at the "
        "image diagonal, so these models' distances measure missed objects more than boundary placement (the "
        "tables give the non-empty distances beside them)."
    )


def floor_object_sizes(results: Results) -> str | None:
    """Which object sizes each level's resolution alone loses: the bins where the floor detects fewer than half of
    the objects, its whole 95 % interval below 50 %."""
    bins = object_bins(results)
    lost = []
    for level, stats in floor_detection_by_size(results).items():
        below = [(name, stat) for name, stat in zip(bins, stats, strict=True)
                 if stat is not None and not math.isnan(stat.high) and stat.high < 0.5]  # fmt: skip
        if below:
            sizes = ", ".join(f"{name} {UNIT.get()} ({rate_with_interval(stat)} detected)" for name, stat in below)
            lost.append(f"level {level} loses {sizes}")
    if not lost:
        return None
    return (
        "By resolution alone (the floor: the best map a level allows), "
        + "; ".join(lost)
        + ". An object counts as detected when matched with IoU ≥ 0.5; the floor is fit to a segmentation loss, not "
        "to detection, so this is what each level's resolution allows in practice rather than a proof."
    )


def objects_without_skips(results: Results) -> str | None:
    """At the deepest depth with both an all-skip and a no-skip model: the object sizes whose detection rate the skips
    change, each difference with its interval (unpaired: per-object rows have no per-image values, so significant
    only where the two models' intervals do not overlap)."""
    every, none = models_with(results, "all"), models_with(results, "none")
    depths = sorted(set(every) & set(none), reverse=True)
    bins = object_bins(results)
    for depth in depths:
        parts = []
        for name in bins:
            source = OBJECTS_PREFIX + name
            diff = results.difference((none[depth], source), (every[depth], source), "detected")
            if significant(diff):
                with_all = results.get(every[depth], source, "detected")
                without = results.get(none[depth], source, "detected")
                parts.append(
                    f"{name} {UNIT.get()}: {rate_with_interval(without)} without skips against "
                    f"{rate_with_interval(with_all)} with all"
                )
        if parts:
            return (
                f"At depth {depth} the skips change which objects are found (detected at IoU ≥ 0.5; the sizes whose "
                f"intervals do not overlap): " + "; ".join(parts) + "."
            )
    return None


FINDINGS: list[Callable[[Results], str | list[str] | None]] = [
    no_skip_trend,
    all_vs_none,
    single_vs_none,
    probe_gaps,
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
