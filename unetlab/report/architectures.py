"""Architectures compared (``unetlab-ablate experiment=zoo``): where one data set was run with several architectures
(ours, MONAI's, nnU-Net's, smp's), one section puts side by side what each section says of its own architecture: the
skip benefit (all − none hd95, paired) at the deepest depth and the Shapley value of each skip level in the leading
ablation mode, each with its 95 % interval, and says where the architectures agree and where they differ."""

from __future__ import annotations

import math

from unetlab.report.collect import Model, Results
from unetlab.report.findings import UNIT, interval, models_with, px
from unetlab.report.queries import ablation_modes, shapley
from unetlab.report.render import Part, Section, Table


def with_interval(stat) -> str:
    if stat is None or math.isnan(stat.mean):
        return "–"
    if math.isnan(stat.low) or math.isnan(stat.high):
        return f"{stat.mean:.2f}"
    return f"{stat.mean:.2f} [{stat.low:.2f}, {stat.high:.2f}]"


def deepest_pair(results: Results) -> tuple[Model, Model] | None:
    """The all-skip and no-skip models at the deepest depth that has both."""
    every, none = models_with(results, "all"), models_with(results, "none")
    depths = sorted(set(every) & set(none))
    return (every[depths[-1]], none[depths[-1]]) if depths else None


def compared_section(settings: list[Results]) -> Section | None:
    """The section comparing the architectures of one data set and image size (``settings``: one ``Results`` per
    architecture), or None with fewer than two."""
    if len({results.models[0].arch for results in settings}) < 2:
        return None
    first = settings[0].models[0]
    mode = next((m for results in settings for m in ablation_modes(results)), None)
    depth = max((pair[0].depth for results in settings if (pair := deepest_pair(results))), default=None)
    if depth is None:
        return None
    levels = list(range(depth))
    rows, benefits, leaders = [], {}, {}
    token = UNIT.set(settings[0].unit)
    try:
        for results in settings:
            pair = deepest_pair(results)
            if pair is None or pair[0].depth != depth:
                continue
            every, none = pair
            diff = results.difference((every, "model"), (none, "model"))
            values = dict(next((v for m, v in shapley(results, mode, "hd95") if m == every), {})) if mode else {}
            benefits[every.net] = diff
            if values:
                lead = min(values, key=lambda level: (values[level].mean, level))
                lowers = not math.isnan(values[lead].high) and values[lead].high < 0  # significantly below 0
                leaders[every.net] = lead if lowers else None
            rows.append([
                every.net, f"{results.params[every]:,}", px(results.value(every, "model", "hd95")),
                px(results.value(none, "model", "hd95")), interval(diff) if diff else "–",
                *(with_interval(values.get(level)) for level in levels),
            ])  # fmt: skip
        text = sentences(benefits, leaders)
    finally:
        UNIT.reset(token)
    columns = ["architecture", "params (all skips)", "hd95 all", "hd95 none", "all − none (paired)"]
    columns += [f"φ level {level}" for level in levels]
    table = Table(
        f"Depth {depth}: the skip benefit and the Shapley value φ of each skip level for hd95 ({mode} ablation, "
        "all-skip model; negative: the skip lowers the error), mean over seeds [95 % interval]",
        columns,
        rows,
    )
    title = f"Architectures compared: {first.dataset}" + (f", {first.shown_size}" if first.shown_size else "")
    how = (
        "Each architecture's own section gives its numbers in full; here they stand side by side. A level an "
        "architecture has no skip at (smp's and MONAI UNet's full-resolution level) shows –."
    )
    return Section(title, text, [Part("Skip benefit and Shapley values by architecture", how, None, [table])])


def sentences(benefits: dict, leaders: dict[str, int | None]) -> list[str]:
    """Where the architectures agree and where they differ: the sign of the skip benefit, and the level whose skip
    lowers hd95 most."""
    out = []
    helped = [name for name, diff in benefits.items() if diff is not None and diff.significant and diff.value < 0]
    hurt = [name for name, diff in benefits.items() if diff is not None and diff.significant and diff.value > 0]
    level = [name for name, diff in benefits.items() if diff is None or not diff.significant]
    parts = []
    if helped:
        parts.append(f"lower hd95 significantly in {', '.join(helped)}")
    if hurt:
        parts.append(f"raise it significantly in {', '.join(hurt)}")
    if level:
        parts.append(f"make no significant difference in {', '.join(level)}")
    agree = "All architectures agree: the skips" if len(parts) == 1 else "The architectures differ: the skips"
    out.append(f"{agree} {'; '.join(parts)} (all − none at the deepest depth, paired).")
    by_level: dict[int, list[str]] = {}
    for name, lead in leaders.items():
        if lead is not None:
            by_level.setdefault(lead, []).append(name)
    without = [name for name, lead in leaders.items() if lead is None]
    tail = f"; in {', '.join(without)} no skip's φ is significantly below 0" if without else ""
    if len(by_level) == 1 and not without:
        ((lead, _),) = by_level.items()
        out.append(f"In every architecture the skip at level {lead} has the lowest φ (it lowers hd95 most).")
    elif by_level:
        listed = "; ".join(f"level {lead} in {', '.join(names)}" for lead, names in sorted(by_level.items()))
        out.append(f"The skip that lowers hd95 most (lowest φ, significantly below 0): {listed}{tail}.")
    elif without:
        out.append(f"In {', '.join(without)} no skip's φ is significantly below 0.")
    return out
