"""What the numbers show, in a few sentences computed from them. Each sentence appears only when its data exist.

All numbers are hd95 (px) of the class ``mean``, averaged over runs (seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

from unetlab.conventions import level_of
from unetlab.report.collect import Model, Results
from unetlab.report.views import ablation_modes, shapley

TIE = 1e-9


def px(value: float) -> str:
    return f"{value:.2f} px"


def signed(value: float) -> str:
    return f"{value:+.2f} px".replace("-", "−")


def levels_text(levels: list[int]) -> str:
    names = [str(level) for level in levels]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def above(gap: float) -> str:
    return f"{gap:.2f} px above" if gap >= 0 else f"{-gap:.2f} px below"


def describe(model: Model) -> str:
    """``the depth-3 all-skip U-Net``, ``the depth-3 U-Net with skips 0,2``."""
    if model.skip_label == "all":
        return f"the depth-{model.depth} all-skip U-Net"
    if model.skip_label == "none":
        return f"the depth-{model.depth} no-skip U-Net"
    return f"the depth-{model.depth} U-Net with skips {model.skips}"


def models_with(results: Results, label: str) -> dict[int, Model]:
    return {m.depth: m for m in results.models if m.skip_label == label}


def no_skip_trend(results: Results) -> str | None:
    """How no-skip hd95 changes from the shallowest to the deepest depth."""
    values = {d: results.value(m, "model", "hd95") for d, m in models_with(results, "none").items()}
    values = {d: v for d, v in sorted(values.items()) if v is not None}
    if len(values) < 2:
        return None
    depths = list(values)
    first, last = values[depths[0]], values[depths[-1]]
    verb = "rises" if last > first + TIE else "falls" if last < first - TIE else "stays level"
    steps = [values[b] - values[a] for a, b in pairwise(depths)]
    trend = ""
    if len(steps) > 1 and all(step > TIE for step in steps):
        trend = ", growing with every added level"
    elif len(steps) > 1 and all(step >= -TIE for step in steps):
        trend = ", never falling as depth grows"
    return (
        f"Without skips, hd95 {verb} from {px(first)} at depth {depths[0]} to {px(last)} at depth {depths[-1]} "
        f"({signed(last - first)}{trend})."
    )


def all_vs_none(results: Results) -> str | None:
    """All-skip vs no-skip hd95 at the deepest depth that has both."""
    every, none = models_with(results, "all"), models_with(results, "none")
    for depth in sorted(set(every) & set(none), reverse=True):
        with_skips = results.value(every[depth], "model", "hd95")
        without = results.value(none[depth], "model", "hd95")
        if with_skips is None or without is None:
            continue
        if abs(with_skips - without) <= TIE:
            comparison = "no difference"
        elif with_skips > TIE and without > TIE:
            ratio = without / with_skips
            comparison = f"{ratio:.1f}× lower" if ratio >= 1 else f"{1 / ratio:.1f}× higher"
            comparison = f"the skips leave hd95 {comparison}"
        else:
            comparison = f"a difference of {signed(with_skips - without)}"
        sentence = (
            f"At depth {depth}, the deepest with both, all skips give hd95 {px(with_skips)} against {px(without)} "
            f"without skips: {comparison}"
        )
        assd_with, assd_without = (results.value(m[depth], "model", "assd") for m in (every, none))
        if assd_with is not None and assd_without is not None:
            sentence += f" (ASSD {px(assd_with)} vs {px(assd_without)})"
        return sentence + "."
    return None


def probe_gaps(results: Results) -> str | None:
    """Probe minus floor at the shallowest and the deepest level, for the deepest depth with probes and floors."""

    def gap(model: Model, key: str) -> float | None:
        probe = results.value(model, f"probe/{key}", "hd95")
        floor = results.value(model, f"floor/{level_of(key)}", "hd95")
        return None if probe is None or floor is None else probe - floor

    for depth in sorted({m.depth for m in results.models}, reverse=True):
        models = [m for m in results.models if m.depth == depth]
        shallow = [g for g in (gap(m, "enc0") for m in models) if g is not None]
        deep = [g for g in (gap(m, f"enc{depth}") for m in models) if g is not None]
        if not shallow or not deep:
            continue
        over = f", averaged over {len(shallow)} skip sets" if len(shallow) > 1 else ""
        sentence = (
            f"Linear probes at depth {depth} sit {above(sum(shallow) / len(shallow))} the resolution floor "
            f"at level 0 (enc0) and {above(sum(deep) / len(deep))} it at the bottleneck, level {depth} "
            f"(enc{depth}){over}"
        )
        decoder = {m.skip_label: gap(m, "dec0") for m in models if m.skip_label in ("all", "none")}
        decoder = {label: value for label, value in decoder.items() if value is not None}
        if decoder:
            parts = [f"{above(value)} it {'with all skips' if label == 'all' else 'without skips'}"
                     for label, value in sorted(decoder.items())]  # fmt: skip
            sentence += f"; the last decoder features (dec0) sit {' and '.join(parts)}"
        return sentence + " (gap = probe hd95 − floor hd95)."
    return None


def largest_shapley(results: Results) -> str | None:
    """Which skip level lowers hd95 most (most negative Shapley value) in the all-skip models."""
    modes = ablation_modes(results)
    if not modes:
        return None
    mode = modes[0]
    per_model = [(m, values) for m, values in shapley(results, mode, "hd95") if len(values) > 1]
    if not per_model:
        return None
    every = [(m, values) for m, values in per_model if m.skip_label == "all"] or per_model
    model, values = max(every, key=lambda item: (item[0].depth, len(item[1])))
    total = sum(stat.mean for stat in values.values())
    lowest = min(stat.mean for stat in values.values())
    best = [level for level, stat in values.items() if stat.mean <= lowest + TIE]
    where = f"Shapley attribution ({mode} ablation) in {describe(model)}"
    if len(best) == len(values):
        return f"{where}: every kept skip has the same φ for hd95 ({signed(lowest)}; total {signed(total)})."
    skip = f"the skip at level {best[0]}" if len(best) == 1 else f"the skips at levels {levels_text(best)}"
    if lowest < -TIE:
        sentence = f"{where}: {skip} lowers hd95 most: φ = {signed(lowest)} of the total {signed(total)} "
        sentence += "(v(all kept) − v(none))"
    else:
        sentence = f"{where}: no skip lowers hd95; {skip} raises it least: φ = {signed(lowest)} (total {signed(total)})"
    if len(every) > 1 and len(best) == 1:
        count = sum(1 for _, v in every if min(v, key=lambda level: v[level].mean) == best[0])
        which = "all-skip models" if model.skip_label == "all" else "models"
        sentence += f"; level {best[0]} has the lowest φ in {count} of the {len(every)} {which} with several kept skips"
    return sentence + "."


def drop_one(results: Results) -> list[str]:
    """At each depth whose grid holds every all-but-one skip set: which dropped skip hurts least, vs Wilm et al."""
    sentences = []
    by_key = {(m.depth, m.kept): m for m in results.models}
    for depth in sorted({m.depth for m in results.models}):
        if depth < 2:
            continue
        levels = list(range(depth))
        hd95, spread = {}, {}
        for dropped in levels:
            model = by_key.get((depth, tuple(level for level in levels if level != dropped)))
            stat = None if model is None else results.get(model, "model", "hd95")
            if stat is not None and not math.isnan(stat.mean):
                hd95[dropped], spread[dropped] = stat.mean, stat.std
        if len(hd95) < depth:
            continue
        least = min(hd95.values())
        best = [level for level, value in hd95.items() if value <= least + TIE]
        top = depth - 1
        others = "; ".join(f"without level {level}: {px(value)}" for level, value in hd95.items())
        full = by_key.get((depth, tuple(levels)))
        full_value = None if full is None else results.value(full, "model", "hd95")
        reference = f"; all skips: {px(full_value)}" if full_value is not None else ""
        sentence = (
            f"At depth {depth}, among the models trained with all skips but one, dropping the skip at level "
            f"{levels_text(best)} hurts least (hd95 {others}{reference})"
        )
        wilm = "Wilm et al. (2024), who found dropping the top skip best on real data"
        if best == [top]:
            verdict = f"that is the top skip (level {top}), so these results agree with {wilm}"
        elif top in best:
            verdict = f"the top skip (level {top}) only ties for best, so these results partly agree with {wilm}"
        else:
            verdict = f"dropping the top skip (level {top}) is not best, so these results do not agree with {wilm}"
        runner_up = min((level for level in hd95 if level not in best), key=hd95.get, default=None)
        if runner_up is not None:
            margin = hd95[runner_up] - least
            stds = [spread[level] for level in (*best, runner_up) if not math.isnan(spread[level])]
            if stds and margin < max(stds):
                verdict += (
                    f"; but the margin to the next best ({px(margin)}) is smaller than the spread over seeds "
                    f"(std {px(max(stds))}), so the ranking is not firm"
                )
        sentences.append(f"{sentence}; {verdict}.")
    return sentences


def single_skip_ablation(results: Results) -> str | None:
    """In the deepest all-skip model, which single skip can be ablated at test time at the least cost."""
    modes = ablation_modes(results, prefix="ablate")
    if not modes:
        return None
    mode = modes[0]
    for depth, model in sorted(models_with(results, "all").items(), reverse=True):
        base = results.value(model, "model", "hd95")
        costs = {level: results.value(model, f"ablate/{mode}/{level}", "hd95") for level in model.kept}
        if depth < 2 or base is None or any(cost is None for cost in costs.values()):
            continue
        costs = {level: value - base for level, value in costs.items()}
        least, most = min(costs.values()), max(costs.values())
        cheapest = [level for level, cost in costs.items() if cost <= least + TIE]
        dearest = [level for level, cost in costs.items() if cost >= most - TIE]
        if most - least <= TIE:
            return (
                f"Ablating one skip at test time ({mode}) in {describe(model)} costs the same at every level "
                f"(hd95 {signed(least)})."
            )
        return (
            f"Ablating one skip at test time ({mode}) in {describe(model)} costs least at level "
            f"{levels_text(cheapest)} (hd95 {signed(least)}) and most at level {levels_text(dearest)} ({signed(most)})."
        )
    return None


def empty_predictions(results: Results) -> str | None:
    """A caution where models left objects out (or hallucinated them): their distances are the image diagonal."""
    rates = {model: rate for model, rate in results.empty_rate.items() if rate > TIE}
    if not rates:
        return None
    worst = max(rates, key=rates.get)
    return (
        f"Caution: in {len(rates)} of {len(results.models)} models, prediction or ground truth of a class was empty "
        f"in some test images (up to {rates[worst]:.0%}, {describe(worst)}); those images count at the image "
        "diagonal, so these models' distances measure missed objects more than boundary placement."
    )


def vanishing_floor(results: Results, threshold: float = 0.05) -> str | None:
    """A caution where the resolution floor itself is empty in many test images.

    Averaged down by ``2**level``, an object smaller than about half a cell vanishes at the 0.5 threshold; such
    images count at the image diagonal, so the floor's distances there measure vanished objects, and a probe whose
    coarse blob keeps the object scores *below* the floor. Rates are averaged over the models of the grid.
    """
    rates: dict[int, list[float]] = {}
    for (_, source), rate in results.source_empty_rate.items():
        if source.startswith("floor/") and not math.isnan(rate):
            rates.setdefault(int(source.split("/", 1)[1]), []).append(rate)
    mean = {level: sum(values) / len(values) for level, values in rates.items()}
    high = sorted(level for level, rate in mean.items() if rate >= threshold)
    if not high:
        return None
    first, deepest = high[0], high[-1]
    if first == deepest:
        share = f"in {mean[first]:.0%} of test images at level {first}"
    else:
        share = f"from {mean[first]:.0%} of test images at level {first} to {mean[deepest]:.0%} at level {deepest}"
    return (
        f"Caution: the resolution floor is empty {share} (objects smaller than about half a "
        f"{2**first}×{2**first}-px cell vanish when averaged down); those images count at the image diagonal, "
        "so at these levels the floor measures vanished objects rather than boundary placement, and a probe that "
        "keeps a coarse blob can score below it."
    )


FINDINGS: list[Callable[[Results], str | list[str] | None]] = [
    no_skip_trend,
    all_vs_none,
    probe_gaps,
    vanishing_floor,
    largest_shapley,
    drop_one,
    single_skip_ablation,
    empty_predictions,
]


def findings(results: Results) -> list[str]:
    """The sentences whose data exist, in a fixed order."""
    out = []
    for finding in FINDINGS:
        result = finding(results)
        if isinstance(result, list):
            out += result
        elif result:
            out.append(result)
    return out
