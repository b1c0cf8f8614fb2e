"""Published findings, reproduced or not: each claim in one sentence, what this benchmark measured, and a verdict
computed from the numbers (``docs/published.md`` quotes the papers and defines each test).

A verdict is ``reproduced`` where the measured effect has the claimed sign and its 95 % interval excludes 0 (or the
stated threshold), ``not reproduced`` where it has the opposite sign with the interval excluding 0, and
``inconclusive`` where the interval holds 0. A claim appears only when the runs it needs exist: Wilm needs the
all-but-one skip sets of one depth with test-time shifts (``experiment=wilm``), Kamath models with and without skips
at two or more texture complexities (``experiment=kamath``), Luo the effective receptive fields (``eval.erf``,
``experiment=luo``). Distances are hd95 of the class mean, in the results' unit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from scipy import stats

from unetlab import sources
from unetlab.report.collect import Model, Results, Stat
from unetlab.report.findings import UNIT, levels_text
from unetlab.report.findings import interval as diff_text
from unetlab.report.intervals import Diff
from unetlab.report.queries import shifts
from unetlab.report.tables import fmt

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
WILM = "Wilm et al. 2024 (Rethinking U-net skip connections for biomedical image segmentation)"
KAMATH = "Kamath et al. 2023 (Do we really need that skip-connection?, MICCAI)"
LUO = "Luo et al. 2016 (Understanding the effective receptive field in deep CNNs, NeurIPS)"


@dataclass(frozen=True)
class Claim:
    """One published claim as tested here."""

    reference: str
    claim: str
    measured: str
    verdict: str

    def sentence(self) -> str:
        return f"**{self.reference}**: {self.claim} Measured: {self.measured} Verdict: **{self.verdict}**."


def interval(diff: Diff | None, unit: str | None = None) -> str:
    """A difference with its interval (``findings.interval``), ``–`` where there is none."""
    return "–" if diff is None else diff_text(diff, unit)


def verdict(diff: Diff | None, expected_sign: int) -> str:
    """``reproduced`` where ``diff`` is significant with ``expected_sign`` (+1 or -1), ``not reproduced`` where it is
    significant with the other sign, else ``inconclusive``."""
    if diff is None or not diff.significant:
        return INCONCLUSIVE
    return REPRODUCED if (diff.value > 0) == (expected_sign > 0) else NOT_REPRODUCED


PART_WORDS = {REPRODUCED: "holds", NOT_REPRODUCED: "opposite", INCONCLUSIVE: "undecided"}  # one part of a claim


def combine(verdicts: list[str]) -> str:
    """All reproduced -> reproduced; any not reproduced -> not reproduced; otherwise inconclusive."""
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return NOT_REPRODUCED if NOT_REPRODUCED in verdicts else INCONCLUSIVE


def models_by_skips(results: Results, setting: tuple[str, str], depth: int) -> dict[tuple[int, ...], Model]:
    """The models of one setting (data set, image size) and depth, by their kept skips."""
    return {m.kept: m for m in results.models if m.setting == setting and m.depth == depth}


def shift_names(results: Results, models: list[Model]) -> list[str]:
    """The shifts every one of ``models`` was scored under."""
    names = shifts(results)
    return [n for n in names if all(results.get(m, sources.shift(n), "hd95") for m in models)]


def mean_over_shifts(results: Results, a: Model, b: Model, names: list[str]) -> Diff | None:
    """hd95 of ``a`` minus ``b`` averaged over the shifts ``names`` (paired)."""
    weight = 1.0 / len(names)
    terms = [(weight, a, sources.shift(n)) for n in names] + [(-weight, b, sources.shift(n)) for n in names]
    return results.compare(terms)


# ---- Wilm et al. 2024 ------------------------------------------------------------------------------------------


def wilm(results: Results) -> list[Claim]:
    """Wilm's claims at the deepest depth (of the first setting) that has all, none and every all-but-one skip set."""
    for setting, depth in sorted({(m.setting, m.depth) for m in results.models}, key=lambda sd: (sd[0], -sd[1])):
        sets = models_by_skips(results, setting, depth)
        levels = tuple(range(depth))
        drop = {level: sets.get(tuple(x for x in levels if x != level)) for level in levels}
        full, bare = sets.get(levels), sets.get(())
        if depth >= 2 and full and bare and all(drop.values()):
            names = shift_names(results, [full, bare, *drop.values()])
            if names:
                claims = wilm_susceptibility(results, full, bare, names)
                return [
                    *claims,
                    wilm_full_vs_none(results, full, bare, names),
                    wilm_drop_top(results, full, drop, names),
                ]
    return []


def wilm_susceptibility(results: Results, full: Model, bare: Model, names: list[str]) -> list[Claim]:
    """Two claims: earlier layers are the more susceptible (enc0 above the bottleneck of the all-skip model, under
    every shift); removing the skips lowers the susceptibility of the deeper layers (dec0 of the no-skip model below
    the all-skip one's, under every shift)."""
    bottleneck = f"enc{full.depth}"
    tests = {
        "early": ("earlier layers are more susceptible to domain shift (the Hellinger distance between in-domain "
                  f"and shifted activations is larger at enc0 than at the bottleneck {bottleneck}, all skips, every "
                  "shift).",
                  (full, "enc0"), (full, bottleneck), +1),
        "skips": ("removing skip connections lowers the domain susceptibility of the deeper layers (dec0 moves less "
                  "under every shift without skips than with all).", (bare, "dec0"), (full, "dec0"), -1),
    }  # fmt: skip
    claims = []
    for text, (model_a, key_a), (model_b, key_b), sign in tests.values():
        parts, verdicts = [], []
        for name in names:
            source_a, source_b = sources.susceptibility(name, key_a), sources.susceptibility(name, key_b)
            diff = results.difference((model_a, source_a), (model_b, source_b), "hellinger")
            verdicts.append(verdict(diff, sign))
            a = fmt(results.get(model_a, source_a, "hellinger"), 3)
            b = fmt(results.get(model_b, source_b, "hellinger"), 3)
            parts.append(f"{name} {a} vs {b} ({PART_WORDS[verdicts[-1]]})")
        label_a = key_a if model_a == model_b else f"{key_a} without skips"
        label_b = key_b if model_a == model_b else f"{key_b} with all"
        claims.append(Claim(
            WILM, text,
            f"Hellinger distance, {label_a} vs {label_b}, with 95 % intervals over the test images (apart: "
            "significant): " + "; ".join(parts) + ".",
            combine(verdicts),
        ))  # fmt: skip
    return claims


def wilm_full_vs_none(results: Results, full: Model, bare: Model, names: list[str]) -> Claim:
    inside = results.difference((full, "model"), (bare, "model"))
    shifted = mean_over_shifts(results, full, bare, names)
    return Claim(
        WILM,
        f"the U-Net with all skips beats the one without (depth {full.depth}), in domain and under shift.",
        f"hd95 all − none in domain {interval(inside)}; under shift (mean over {len(names)} shifts) "
        f"{interval(shifted)}.",
        combine([verdict(inside, -1), verdict(shifted, -1)]),
    )


def wilm_drop_top(results: Results, full: Model, drop: dict[int, Model], names: list[str]) -> Claim:
    """Dropping only the uppermost skip (level 0, the finest) beats every other all-but-one set and all skips."""
    others = {f"without level {level}": m for level, m in drop.items() if level != 0} | {"all skips": full}
    top = drop[0]
    parts, verdicts = [], []
    for where, diffs in (
        ("in domain", {label: results.difference((top, "model"), (m, "model")) for label, m in others.items()}),
        ("under shift", {label: mean_over_shifts(results, top, m, names) for label, m in others.items()}),
    ):
        verdicts += [verdict(diff, -1) for diff in diffs.values()]
        parts.append(f"{where}: " + "; ".join(f"vs {label} {interval(diff)}" for label, diff in diffs.items()))
    best = min([*drop.values(), full], key=lambda m: results.value(m, "model", "hd95") or math.inf)
    best_text = "all skips" if best == full else f"without level {levels_text(sorted(set(full.kept) - set(best.kept)))}"
    return Claim(
        WILM,
        f"removing only the uppermost skip (level 0, the finest) is best at depth {full.depth}, in domain and under "
        "shift: better than removing any other single skip and than keeping all.",
        "hd95 without level 0 minus each alternative, paired — "
        + " / ".join(parts)
        + f". Lowest in-domain hd95: {best_text}.",
        combine(verdicts),
    )


# ---- Kamath et al. 2023 ----------------------------------------------------------------------------------------

COMPLEXITY = re.compile(r"^(?P<base>.+)-complexity(?P<value>[0-9.e+-]+)$")


def complexity_of(model: Model) -> tuple[str, float]:
    """``shapes-complexity0.5`` -> ("shapes", 0.5); ``shapes`` -> ("shapes", 0.0)."""
    match = COMPLEXITY.match(model.dataset)
    return (match["base"], float(match["value"])) if match else (model.dataset, 0.0)


def kamath(results: Results) -> list[Claim]:
    """Skip benefit against texture complexity, and robustness under shift, at the deepest depth with all and none
    at two or more complexities of one data set and image size."""
    pairs: dict[tuple, dict[float, tuple[Model, Model]]] = {}
    for model in results.models:
        if model.skip_label != "all":
            continue
        base, complexity = complexity_of(model)
        bare = next((m for m in results.models if m.kept == () and m.depth == model.depth
                     and m.dataset == model.dataset and m.image_size == model.image_size), None)  # fmt: skip
        if bare is not None:
            pairs.setdefault((base, model.image_size, model.depth), {})[complexity] = (model, bare)
    found = {key: value for key, value in pairs.items() if len(value) >= 2}
    if not found:
        return []
    (base, _, depth), by_complexity = max(found.items(), key=lambda item: (len(item[1]), item[0][2]))
    levels = sorted(by_complexity)
    benefit = {c: results.difference((by_complexity[c][1], "model"), (by_complexity[c][0], "model")) for c in levels}
    low, high = levels[0], levels[-1]
    (full_low, bare_low), (full_high, bare_high) = by_complexity[low], by_complexity[high]
    growth = results.compare([(1, bare_high, "model"), (-1, full_high, "model"), (-1, bare_low, "model"),
                              (1, full_low, "model")])  # fmt: skip
    claims = [
        Claim(
            KAMATH,
            "the benefit of skip connections is small for low-to-medium texture complexity (foreground and "
            "background textures alike) and appears only when the complexity is high: the benefit grows from the "
            f"lowest to the highest complexity ({base}, depth {depth}).",
            "hd95 benefit of all skips (none − all, paired) by complexity: "
            + "; ".join(f"{c:g}: {interval(benefit[c])}" for c in levels)
            + f"; growth from {low:g} to {high:g}: {interval(growth)}.",
            verdict(growth, +1),
        )
    ]
    names = shift_names(results, [full_high, bare_high])
    if names:
        weight = 1.0 / len(names)
        terms = []
        for name in names:  # (all shifted − all) − (none shifted − none), averaged over the shifts
            terms += [(weight, full_high, sources.shift(name)), (-weight, full_high, sources.MODEL),
                      (-weight, bare_high, sources.shift(name)), (weight, bare_high, sources.MODEL)]  # fmt: skip
        worse = results.compare(terms)

        def change(model: Model, name: str) -> str:
            return interval(results.difference((model, sources.shift(name)), (model, sources.MODEL)))

        per_shift = "; ".join(
            f"{name}: all {change(full_high, name)}, none {change(bare_high, name)}" for name in names
        )
        claims.append(
            Claim(
                KAMATH,
                "skip connections bring robustness degradations out of domain: under test-time shift the model with "
                f"skips loses more than the one without (complexity {high:g}).",
                f"hd95 change under each shift (shifted − in domain, paired) — {per_shift}; all minus none, mean over "
                f"the shifts: {interval(worse)}.",
                verdict(worse, +1),
            )
        )
    return claims


# ---- Luo et al. 2016 -------------------------------------------------------------------------------------------


def erf_points(results: Results, trained: bool = True) -> list[tuple[Model, int, Stat, Stat]]:
    """(model, level, ERF size95, theoretical size) of every encoder key that has ERF rows, of the trained models or
    at random init."""
    points = []
    for model in results.models:
        for level in range(model.depth + 1):
            size = results.get(model, sources.erf(f"enc{level}", trained), "size95")
            theoretical = results.get(model, sources.erf(f"enc{level}", trained), "theoretical")
            if size is not None and theoretical is not None and not math.isnan(size.mean):
                points.append((model, level, size, theoretical))
    return points


def log_slope(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Least-squares slope of log y on log x with its 95 % t-interval: (slope, low, high)."""
    lx, ly = torch.tensor(x, dtype=torch.float64).log(), torch.tensor(y, dtype=torch.float64).log()
    n = len(lx)
    dx = lx - lx.mean()
    slope = float((dx * (ly - ly.mean())).sum() / (dx**2).sum())
    residual = ly - ly.mean() - slope * dx
    error = math.sqrt(float((residual**2).sum()) / max(n - 2, 1) / float((dx**2).sum()))
    t = float(stats.t.ppf(0.975, n - 2)) if n > 2 else math.inf
    return slope, slope - t * error, slope + t * error


def half_mass(results: Results, model: Model, level: int) -> str:
    """``; the side holding half the mass: 0.31`` (its ratio to the theoretical side), or nothing."""
    size = results.get(model, sources.erf(f"enc{level}"), "size50")
    theoretical = results.get(model, sources.erf(f"enc{level}"), "theoretical")
    if size is None or theoretical is None:
        return ""
    return f" (the side holding half the mass: {size.mean / theoretical.mean:.2f} of it)"


def luo(results: Results) -> list[Claim]:
    trained, init = erf_points(results), erf_points(results, trained=False)
    if len({point[1] for point in trained}) < 3:  # a fit needs three or more levels
        return []
    deepest = max(trained, key=lambda p: (p[3].mean, p[0].skip_label == "none"))
    model, level, size, theoretical = deepest
    ratio = Stat(size.mean / theoretical.mean, float("nan"), size.runs, size.low / theoretical.mean,
                 size.high / theoretical.mean)  # fmt: skip
    fraction = REPRODUCED if ratio.high < 0.5 else NOT_REPRODUCED if ratio.low > 0.5 else INCONCLUSIVE
    claims = [
        Claim(
            LUO,
            "the effective receptive field occupies only a fraction of the theoretical one (here: less than half its "
            "side, the side holding 95 % of the gradient mass).",
            f"at the deepest encoder key (enc{level} of {model.described}) the ERF is {fmt(size, 0)} px of a "
            f"{theoretical.mean:.0f} px theoretical field, a ratio of {fmt(ratio)}{half_mass(results, model, level)}.",
            fraction,
        )
    ]
    slope, low, high = log_slope([p[3].mean for p in trained], [p[2].mean for p in trained])
    grows = REPRODUCED if high < 1 else NOT_REPRODUCED if low > 1 else INCONCLUSIVE
    # against depth: enc<l> sits behind n = 2 (l + 1) 3x3 convolutions (two per level) and l poolings
    convs = [2.0 * (p[1] + 1) for p in trained]
    depth_erf, depth_erf_low, depth_erf_high = log_slope(convs, [p[2].mean for p in trained])
    depth_field = log_slope(convs, [p[3].mean for p in trained])[0]
    claims.append(
        Claim(
            LUO,
            "the ERF grows more slowly than the theoretical field (for stacked convolutions as the square root of the "
            "depth against linearly: an exponent of 0.5 of the ERF size in the theoretical size).",
            f"exponent of the ERF size in the theoretical size over {len(trained)} encoder keys of "
            f"{len({p[0] for p in trained})} trained models (least squares on logs, 95 % t-interval): {slope:.2f} "
            f"[{low:.2f}, {high:.2f}]; sublinear means below 1, and Luo's 0.5 is "
            f"{'inside' if low <= 0.5 <= high else 'outside'} the interval. Against depth (the number n of 3x3 "
            f"convolutions before the key, two per level, with a pooling between levels): the ERF grows as "
            f"n^{depth_erf:.2f} [{depth_erf_low:.2f}, {depth_erf_high:.2f}], the theoretical field as "
            f"n^{depth_field:.2f} (Luo's stride-1 stack: n^0.5 and n^1).",
            grows,
        )
    )
    matched = {(p[0], p[1]): p[2] for p in init}
    changes = [(p[2], matched[(p[0], p[1])]) for p in trained if (p[0], p[1]) in matched]
    if changes:
        larger = sum(t.low > i.high for t, i in changes)
        smaller = sum(t.high < i.low for t, i in changes)
        relative = sum(t.mean / i.mean for t, i in changes) / len(changes)
        enlarged = REPRODUCED if larger > len(changes) / 2 and not smaller else (
            NOT_REPRODUCED if smaller > len(changes) / 2 and not larger else INCONCLUSIVE)  # fmt: skip
        claims.append(
            Claim(
                LUO,
                "training enlarges the effective receptive field.",
                f"trained against random-init ERF size at {len(changes)} encoder keys: larger at {larger}, smaller at "
                f"{smaller} (intervals apart), the rest with overlapping intervals; trained/init size "
                f"{relative:.2f} on average.",
                enlarged,
            )
        )
    return claims


def published_findings(results: Results) -> list[Claim]:
    """Every claim whose runs exist, Wilm, Kamath, Luo in that order; distances in ``results.unit``."""
    token = UNIT.set(results.unit)
    try:
        return [*wilm(results), *kamath(results), *luo(results)]
    finally:
        UNIT.reset(token)
