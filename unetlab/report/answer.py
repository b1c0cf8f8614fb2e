"""The report's answer, first: two to four plain sentences and one figure, every number computed from the results
with its paired 95 % interval (``Results.compare``), never written by hand.

1. How far boundary error (hd95) grows without skips from the shallowest to the deepest depth (``depth_trend``'s
   rule), and where the all-skip models stay.
2. What all skips give back at the deepest depth (no-skip minus all-skip hd95, paired).
3. Which skip carries the fine detail: the lowest Shapley value of the leading ablation mode (``lowpass:1``) in the
   deepest all-skip model, and whether it leads the next level significantly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetlab import sources
from unetlab.report import plots
from unetlab.report.collect import Results
from unetlab.report.findings import (
    UNIT,
    depth_series,
    interval,
    px,
    series_trend,
    significant,
)
from unetlab.report.intervals import Diff
from unetlab.report.queries import ablation_modes, shapley

HD95 = "hd95 (95 % of the predicted boundary lies within this distance of the true one, and the other way round)"


def amount(diff: Diff) -> str:
    """The size of a difference with its interval, sign dropped: ``2.50 px [2.08, 2.96]`` for +2.50 or −2.50 (the
    sentence says which way); ``, not significant`` where the interval holds 0."""
    flip = -1.0 if diff.value < 0 else 1.0
    low, high = sorted((flip * diff.low, flip * diff.high))
    text = f"{flip * diff.value:.2f} {UNIT.get()} [{low:.2f}, {high:.2f}]".replace("-", "−")
    return text + ("" if significant(diff) else ", not significant")


@dataclass
class Answer:
    """The answer block: sentences (Markdown inline) and its figure (None where nothing could be drawn)."""

    sentences: list[str]
    image: Path | None


def growth(results: Results) -> str | None:
    """Sentence 1: the no-skip models from the shallowest to the deepest depth, and the all-skip models' range."""
    none, every = depth_series(results, "none"), depth_series(results, "all")
    trend = series_trend(results, none)
    if trend is None:
        return None
    first, last = min(none), max(none)
    overall, _, rule = trend
    start, end = (px(results.value(none[d], "model", "hd95")) for d in (first, last))
    verb = {1: "grows with depth", -1: "shrinks with depth", 0: "shows no significant change with depth"}[rule]
    sentence = (
        f"Without skip connections, boundary error {verb}: {HD95} goes from {start} at depth {first} "
        f"to {end} at depth {last} ({interval(overall)})"
    )
    every_trend = series_trend(results, every)
    if every_trend is not None:
        values = [results.value(m, "model", "hd95") for m in every.values()]
        change, _, all_rule = every_trend
        if all_rule == 0:
            low, high = px(min(values)), px(max(values))
            span = low if low == high else f"between {low} and {high}"
            sentence += (
                f"; with all skips it stays {span} at every depth (depth {min(every)} to {max(every)}: "
                f"{interval(change)})"
            )
        else:
            sentence += (
                f"; with all skips it {'rises' if all_rule > 0 else 'falls'} from "
                f"{px(results.value(every[min(every)], 'model', 'hd95'))} to "
                f"{px(results.value(every[max(every)], 'model', 'hd95'))} ({interval(change)})"
            )
    return sentence + "."


def give_back(results: Results) -> str | None:
    """Sentence 2: at the deepest depth with both, no-skip minus all-skip hd95 (paired)."""
    none, every = depth_series(results, "none"), depth_series(results, "all")
    both = sorted(set(none) & set(every))
    if not both:
        return None
    depth = both[-1]
    back = results.difference((none[depth], "model"), (every[depth], "model"))
    if back is None:
        return None
    without, with_all = (px(results.value(m[depth], "model", "hd95")) for m in (none, every))
    if significant(back) and back.value > 0:
        lead = f"At depth {depth} the skips give back {amount(back)} of boundary error"
    elif significant(back):
        lead = f"At depth {depth} the skips cost {amount(back)} of boundary error"
    else:
        lead = f"At depth {depth} the skips make no significant difference to boundary error ({interval(back)})"
    return (
        f"{lead} (no skips minus all skips, paired): the all-skip {every[depth].net} places boundaries within "
        f"{with_all}, the "
        f"no-skip one within {without}, because the skips hand the decoder the encoder's fine-grid features that "
        "the down-sampling took away."
    )


def detail_carrier(results: Results) -> str | None:
    """Sentence 3: the skip level with the lowest Shapley value for hd95 in the leading mode (lowpass:1), in the
    deepest all-skip model with two or more skips, and its lead over the next level (paired)."""
    modes = ablation_modes(results)
    if not modes:
        return None
    mode = modes[0]
    candidates = [(m, values) for m, values in shapley(results, mode, "hd95")
                  if m.skip_label == "all" and len(values) > 1]  # fmt: skip
    if not candidates:
        return None
    model, values = max(candidates, key=lambda item: item[0].depth)
    best, runner_up = sorted(values, key=lambda level: (values[level].mean, level))[:2]
    phi = results.compare([(1.0, model, sources.shapley(mode, best))])
    lead = results.difference((model, sources.shapley(mode, best)), (model, sources.shapley(mode, runner_up)))
    if phi is None or lead is None or values[best].mean >= 0:
        return None
    where = "the full-resolution skip" if best == 0 else f"the skip from the 1/{2**best}-resolution level"
    how = (
        f"when each skip is stripped at test time of only the detail it adds beyond the next coarser level (the "
        f"`{mode}` ablation), level {best}'s share of the hd95 the skips save in {model.described} (its "
        f"Shapley value) is {amount(phi)}"
    )
    if significant(lead):
        verdict = f"{amount(lead)} more than level {runner_up}'s"
    else:
        verdict = f"not significantly more than level {runner_up}'s ({amount(lead)})"
    return f"The fine detail travels mostly through level {best}, {where}: {how}, {verdict}."


def answer(results: Results, image: Path) -> Answer | None:
    """The answer of one setting (data set, image size), its figure written to ``image``; None without the
    all-skip and no-skip models it needs."""
    token = UNIT.set(results.unit)
    try:
        sentences = [s for s in (growth(results), give_back(results), detail_carrier(results)) if s]
    finally:
        UNIT.reset(token)
    if not sentences:
        return None
    return Answer(sentences, plots.answer_figure(results, image))
