"""unetlab-report on synthetic runs with known numbers (see tests/fixtures_report.py)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from statistics import mean

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures_report import (
    DEPTHS,
    IMAGES,
    MODES,
    SEED_OFFSET,
    SEEDS,
    metric_columns,
    per_image_for,
    run_name,
    write_grid,
    write_run,
)
from tests.helpers import run_cli
from unetlab.bootstrap import percentile_interval, resample_indices, two_level_indices, two_level_means
from unetlab.cli.report import dirs_to_override
from unetlab.conventions import feature_keys
from unetlab.evaluation.rows import object_rows, object_sums
from unetlab.metrics.classes import COLUMNS
from unetlab.metrics.objects import bin_edges, bin_names
from unetlab.report import ReportError, make_report
from unetlab.report.answer import answer
from unetlab.report.collect import Model, Results, Stat, collect
from unetlab.report.findings import (
    all_vs_none,
    depth_trend,
    drop_one,
    empty_predictions,
    empty_share,
    findings,
    floor_object_sizes,
    found_vs_placed,
    largest_shapley,
    no_skip_trend,
    objects_without_skips,
    probe_gaps,
    single_skip_ablation,
    single_vs_none,
    slope,
    trend_verdict,
    vanishing_floor,
)
from unetlab.report.intervals import Diff
from unetlab.report.queries import ablation_modes, layer_objects, mode_order
from unetlab.report.tables import layer_objects_table
from unetlab.runs.results import read_per_image, read_results, write_per_image, write_results

PLOTS = ["answer", "boundary_vs_depth", "probes_vs_floor", "shapley", "dice_vs_depth", "params_vs_depth"]
BOUNDARY = "Boundary metrics by depth and skip set"
PROBES = "Probe hd95 by level and the resolution floor (gap = probe − floor, paired)"
REPORT_FILES = {"report.md", "report.html", "report.csv", *(f"report_{name}.png" for name in PLOTS)}
DEEPEST = max(DEPTHS)
EVERY = tuple(range(DEEPEST))


@pytest.fixture
def grid(tmp_path):
    root = tmp_path / "grid"
    write_grid(root)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One report of the synthetic grid, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("report")
    write_grid(root / "grid")
    make_report([root / "grid"], root / "out")
    return root / "out"


@pytest.fixture(scope="module")
def results(report):
    return collect([report.parent / "grid"])


def table_block(markdown: str, title: str) -> str:
    return markdown.split(f"**{title}**", 1)[1].split("\n\n", 2)[1]


def table_row(markdown: str, title: str, *cells: str) -> list[str]:
    """The cells of the one row that starts with ``cells`` in the Markdown table titled ``title``."""
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in table_block(markdown, title).splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"{title}: {prefix!r}: {len(rows)} rows"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def table_columns(markdown: str, title: str) -> list[str]:
    header = table_block(markdown, title).splitlines()[0]
    return [cell.strip() for cell in header.strip("|").split("|")]


def cell(stat, digits: int = 2) -> str:
    """A table cell as the report should print a number: mean and 95 % interval, two decimals (the empty rate three)."""
    return f"{stat.mean:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


def model_of(results, depth: int, kept: tuple[int, ...]):
    (model,) = [m for m in results.models if m.depth == depth and m.kept == kept]
    return model


def column(per_image: torch.Tensor, metric: str) -> torch.Tensor:
    """(M, 1, 9) -> (M,) one metric of the only foreground class."""
    return per_image[:, 0, COLUMNS.index(metric)]


def fixture_mean(depth: int, kept: tuple[int, ...], source: str = "model", metric: str = "hd95", **grid) -> float:
    """The fixture's value of a model's (source, metric), averaged over the images and then over the seeds."""
    return mean(float(column(per_image_for(depth, kept, seed, **grid)[source], metric).mean()) for seed in SEEDS)


def two_level_interval(depth: int, kept: tuple[int, ...], source: str = "model", metric: str = "hd95", **grid):
    """The two-level bootstrap interval of the fixture's own values (bootstrap.py's helpers, 1000 resamples)."""
    values = torch.stack([column(per_image_for(depth, kept, seed, **grid)[source], metric) for seed in SEEDS])
    return percentile_interval(two_level_means(values, *two_level_indices(len(SEEDS), IMAGES, 1000, seed=0)))


NUMBER = re.compile(r"(?<![\w.])[−+]?\d+(?:\.\d+)?")  # not the digits of names such as enc0 or hd95


def numbers(sentence: str) -> list[float]:
    """The numbers of a sentence, in order; − (U+2212) and + are signs."""
    return [float(number.replace("−", "-")) for number in NUMBER.findall(sentence)]


def states(sentence: str, *expected: float) -> bool:
    """Whether ``expected`` occur among the sentence's numbers in this order (gaps allowed), each as printed (to two
    decimals)."""
    found = iter(numbers(sentence))
    return all(any(abs(number - round(value, 2)) < 1e-9 for number in found) for value in expected)


def signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}".replace("-", "−")


def gives(sentence: str, diff: Diff) -> bool:
    """The sentence gives the paired difference with its interval, followed by "not significant" exactly where the
    interval holds 0."""
    text = f"{signed(diff.value)} px [{signed(diff.low)}, {signed(diff.high)}]"
    if text not in sentence:
        return False
    holds_zero = diff.low <= 0 <= diff.high
    return all(part.startswith(", not significant") == holds_zero for part in sentence.split(text)[1:])


# ---- files, tables and intervals ----------------------------------------------------------------------------


def test_report_writes_files_and_plots(report):
    out = report
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    for name in PLOTS:
        image = np.asarray(Image.open(out / f"report_{name}.png").convert("L"), dtype=np.float64)
        assert image.shape[0] >= 400 and image.shape[1] >= 600, name
        assert image.std() > 10, f"{name} looks blank"
        assert (image < 128).mean() > 0.005, f"{name} has almost nothing drawn"


def test_tables_show_seed_means_with_their_two_level_intervals(report, results):
    md = (report / "report.md").read_text()
    for depth, kept, label in ((3, (), "none"), (3, EVERY, "all"), (2, (), "none"), (3, (0, 2), "0,2")):
        model = model_of(results, depth, kept)
        stat = results.get(model, "model", "hd95")
        assert stat.runs == len(SEEDS) and stat.mean == pytest.approx(fixture_mean(depth, kept))
        assert (stat.low, stat.high) == pytest.approx(two_level_interval(depth, kept), abs=1e-5)
        assert stat.low < stat.mean < stat.high
        skips = ",".join(map(str, kept)) or "none"
        row = table_row(md, BOUNDARY, str(depth), label, skips, str(len(SEEDS)))
        columns = table_columns(md, BOUNDARY)
        for metric, name in (("hd95", "hd95 (px)"), ("assd", "assd (px)"), ("nsd", "nsd (fraction)")):
            assert row[columns.index(name)] == cell(results.get(model, "model", metric)), (metric, row)
    # every number of the tables has its interval (the parameter counts are exact); (title, label columns)
    tables = [(BOUNDARY, 4), (PROBES, 4), ("Dice and IoU by depth and skip set", 4)]
    for mode in ("lowpass:1", "mean"):
        tables.append((f"Shapley value of each skip level ({mode} ablation)", 3))
        tables.append((f"Test-time ablation ({mode}): the model with the listed kept skips ablated, change = ablated − "
                       "intact", 3))  # fmt: skip
    for title, labels in tables:
        for line in table_block(md, title).splitlines()[2:]:
            values = [c.strip() for c in line.strip("|").split("|")[labels:]]
            assert all(re.fullmatch(r"-?\d+\.\d+ \[-?\d+\.\d+, -?\d+\.\d+\]|–", v) for v in values), (title, line)

    with open(report / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    (row,) = [r for r in rows if (r["depth"], r["skips"], r["source"], r["metric"], r["class"]) ==
              ("3", "none", "model", "hd95", "mean")]  # fmt: skip
    stat = results.get(model_of(results, 3, ()), "model", "hd95")
    assert float(row["mean"]) == pytest.approx(3.0) and row["runs"] == "2" and row["skip_set"] == "none"
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((stat.low, stat.high))
    assert float(row["std"]) == pytest.approx(3.0 * (SEED_OFFSET[1] - SEED_OFFSET[0]) / 2**0.5)


def test_probe_gaps_are_paired_differences(report, results):
    md = (report / "report.md").read_text()
    model = model_of(results, DEEPEST, ())
    row = table_row(md, PROBES, str(DEEPEST), "none", "1", "probe dec")
    gap = results.difference((model, "probe/dec1"), (model, "floor/1"))
    expected = fixture_mean(DEEPEST, (), "probe/dec1") - fixture_mean(DEEPEST, (), "floor/1")
    assert gap.value == pytest.approx(expected, abs=1e-5) and gap.paired
    assert row[-1] == f"{gap.value:.2f} [{gap.low:.2f}, {gap.high:.2f}]"
    # pairing removes what the two share (the same hard images and seeds): the gap varies less than it would if the
    # two numbers were drawn independently
    probe, floor = results.get(model, "probe/dec1", "hd95"), results.get(model, "floor/1", "hd95")
    assert gap.high - gap.low < 0.9 * ((probe.high - probe.low) ** 2 + (floor.high - floor.low) ** 2) ** 0.5
    assert table_row(md, PROBES, str(DEEPEST), "none", "1", "floor")[-1] == "–"


def test_identical_seeds_give_the_image_bootstrap(tmp_path):
    """Two seeds with the same per-image values: the two-level interval is the rows' own image bootstrap."""
    values = per_image_for(1, (0,), 0)
    for seed in SEEDS:
        write_run(tmp_path / "grid" / f"seed{seed}", 1, (0,), seed, values)
    one = tmp_path / "one"
    write_run(one / "seed0", 1, (0,), 0, values)
    with open(tmp_path / "grid" / "seed0" / "results.csv", newline="") as handle:
        rows = {(r["source"], r["metric"], r["class"]): r for r in csv.DictReader(handle)}
    for folder in (tmp_path / "grid", one):  # two identical seeds, then one seed
        results = collect([folder])
        (model,) = results.models
        for source, metric in (
            ("model", "hd95"),
            ("model", "dice"),
            ("probe/enc1", "hd95"),
            ("model", "hd95_nonempty"),
        ):
            stat, row = results.get(model, source, metric), rows[(source, metric, "mean")]
            assert (stat.low, stat.high) == pytest.approx((float(row["ci_low"]), float(row["ci_high"])), abs=1e-6)


def test_the_spread_over_seeds_is_in_the_interval(tmp_path):
    """Every image of seed 0 at 1 px, of seed 1 at 2 px: nothing varies over images, the interval spans the seeds."""
    for seed, hd95 in ((0, 1.0), (1, 2.0)):
        write_run(tmp_path / f"seed{seed}", 1, (), seed, {"model": metric_columns(torch.full((IMAGES,), hd95))})
    results = collect([tmp_path])
    stat = results.get(results.models[0], "model", "hd95")
    assert (stat.mean, stat.low, stat.high) == (1.5, 1.0, 2.0)


def two_models(root: Path, offset: torch.Tensor) -> None:
    """Depth 1, no skips and all skips, two seeds: ``all`` is ``none`` plus ``offset`` on every image and seed."""
    base = torch.arange(IMAGES, dtype=torch.float64) % 4 / 4 + 1  # dyadic: exact in float32 and in sums
    for seed in SEEDS:
        hd95 = base * (1 + seed)
        write_run(root / run_name(1, (), seed), 1, (), seed, {"model": metric_columns(hd95)})
        write_run(root / run_name(1, (0,), seed), 1, (0,), seed, {"model": metric_columns(hd95 + offset)})


def test_a_constant_per_image_difference_is_significant_with_an_interval_of_width_zero(tmp_path):
    two_models(tmp_path, torch.full((IMAGES,), -0.5))
    results = collect([tmp_path])
    every, none = model_of(results, 1, (0,)), model_of(results, 1, ())
    diff = results.difference((every, "model"), (none, "model"))
    assert (diff.value, diff.low, diff.high, diff.significant) == (-0.5, -0.5, -0.5, True)
    each = results.get(every, "model", "hd95")
    assert each.high - each.low > 0.3  # while either model's own number varies a lot
    sentence = all_vs_none(results)
    assert gives(sentence, diff) and "not significant" not in sentence


def test_the_same_values_plus_noise_are_not_significant(tmp_path):
    noise = torch.randn(IMAGES, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.3
    two_models(tmp_path, noise - noise.mean())
    results = collect([tmp_path])
    diff = results.difference((model_of(results, 1, (0,)), "model"), (model_of(results, 1, ()), "model"))
    assert diff.value == pytest.approx(0, abs=1e-6) and diff.low < 0 < diff.high and diff.significant is False
    sentence = all_vs_none(results)
    assert gives(sentence, diff) and "not significant" in sentence


def test_a_run_without_per_image_values_is_refused_with_the_command_that_evaluates_it(tmp_path):
    """Every comparison is paired on the runs' per-image values: a run without per_image.npz (an older evaluation) is
    named, with the command that evaluates it again, instead of being compared unpaired."""
    write_grid(tmp_path / "grid", npz=False)
    with pytest.raises(ReportError, match=r"per_image.npz: no per_image.npz.*unetlab-eval ckpt=.*checkpoints"):
        collect([tmp_path / "grid"])


# ---- findings -----------------------------------------------------------------------------------------------


def test_findings_give_paired_differences_and_verdicts(report, results):
    md = (report / "report.md").read_text()
    section = md.split("## What the numbers show", 1)[1].split("\n## ", 1)[0]
    sentences = [line.removeprefix("- ") for line in section.strip().splitlines()]

    def model(depth, kept):
        return model_of(results, depth, kept)

    def diff(a, b, source_a="model", source_b="model", metric="hd95"):
        return results.difference((model(*a), source_a), (model(*b), source_b), metric)

    # no-skip hd95 from the shallowest depth to the deepest, its slope over depth, then each step: a rise
    sentence = depth_trend(results, "none")
    assert no_skip_trend(results)[0] == sentence
    overall = diff((DEEPEST, ()), (DEPTHS[0], ()))
    steps = [diff((b, ()), (a, ())) for a, b in zip(DEPTHS, DEPTHS[1:])]
    assert overall.value == pytest.approx(fixture_mean(DEEPEST, ()) - fixture_mean(DEPTHS[0], ()), abs=1e-5)
    assert gives(sentence, overall) and all(gives(sentence, step) for step in steps)
    assert sentence.startswith("Without skips, hd95 rises with depth")

    # all skips against none, at every depth
    sentence = all_vs_none(results)
    for depth in DEPTHS:
        versus = diff((depth, tuple(range(depth))), (depth, ()))
        assert versus.value == pytest.approx(
            fixture_mean(depth, tuple(range(depth))) - fixture_mean(depth, ()), abs=1e-5
        )
        assert gives(sentence, versus) and versus.significant
    assert gives(sentence, diff((DEEPEST, EVERY), (DEEPEST, ()), metric="assd"))

    # each single skip against none; level 2 alone has the no-skip mean: not significant by construction
    (sentence,) = single_vs_none(results)
    singles = {level: diff((DEEPEST, (level,)), (DEEPEST, ())) for level in EVERY}
    assert all(gives(sentence, single) for single in singles.values())
    assert singles[2].significant is False and singles[0].significant and singles[1].significant
    assert gives(sentence, diff((DEEPEST, (0,)), (DEEPEST, (1,))))  # the best single skip against the next

    # probe minus floor, averaged over the skip sets of the deepest depth (paired inside each resample)
    sentence = probe_gaps(results)
    deepest = [m for m in results.models if m.depth == DEEPEST]
    for key, level in (("enc0", 0), (f"enc{DEEPEST}", DEEPEST)):
        terms = [(w / len(deepest), m, s) for m in deepest for w, s in ((1, f"probe/{key}"), (-1, f"floor/{level}"))]
        gap = results.compare(terms)
        expected = mean(fixture_mean(m.depth, m.kept, f"probe/{key}") - fixture_mean(m.depth, m.kept, f"floor/{level}")
                        for m in deepest)  # fmt: skip
        assert gap.value == pytest.approx(expected, abs=1e-5) and gives(sentence, gap)
    assert states(sentence, DEEPEST, len(deepest))
    for kept in (EVERY, ()):
        assert gives(sentence, diff((DEEPEST, kept), (DEEPEST, kept), "probe/dec0", "floor/0"))

    # Shapley: the lead of the lowest φ over the next, per mode, lowpass:1 first
    modes = [sentence.split("(", 1)[1].split(" ", 1)[0] for sentence in sentences if sentence.startswith("Shapley")]
    assert modes == ["lowpass:1", "mean"]
    for mode in modes:
        sentence = largest_shapley(results, mode)
        phi = {level: fixture_mean(DEEPEST, EVERY, f"shapley/{mode}/{level}") for level in EVERY}
        best, runner_up = sorted(phi, key=phi.get)[:2]
        lead = diff((DEEPEST, EVERY), (DEEPEST, EVERY), f"shapley/{mode}/{best}", f"shapley/{mode}/{runner_up}")
        assert lead.value == pytest.approx(phi[best] - phi[runner_up], abs=1e-5)
        assert states(sentence, DEEPEST, best, phi[best], sum(phi.values()), runner_up) and gives(sentence, lead)

    # all but one skip: the least harmful drop and its margin to the next best
    (sentence,) = drop_one(results)
    dropped = {level: fixture_mean(DEEPEST, tuple(x for x in EVERY if x != level)) for level in EVERY}
    least, runner_up = sorted(dropped, key=dropped.get)[:2]
    margin = diff(
        (DEEPEST, tuple(x for x in EVERY if x != least)), (DEEPEST, tuple(x for x in EVERY if x != runner_up))
    )
    assert margin.value == pytest.approx(dropped[least] - dropped[runner_up], abs=1e-5) and gives(sentence, margin)
    assert states(sentence, DEEPEST, least) and ("not firm" in sentence) == (not margin.significant)

    # test-time ablation of one skip, per mode: the cheapest and the dearest level, each against the intact model
    for mode in modes:
        sentence = single_skip_ablation(results, mode)
        cost = {level: diff((DEEPEST, EVERY), (DEEPEST, EVERY), f"ablate/{mode}/{level}") for level in EVERY}
        cheapest, dearest = min(cost, key=lambda k: cost[k].value), max(cost, key=lambda k: cost[k].value)
        assert states(sentence, cheapest, cost[cheapest].value, dearest, cost[dearest].value)
        assert gives(sentence, cost[cheapest]) and gives(sentence, cost[dearest])

    assert empty_predictions(results) is None and vanishing_floor(results) is None  # nothing empty in the grid
    assert sentences == findings(results)


def test_a_trend_is_judged_as_a_whole(tmp_path):
    """A rise whose second step alone is not significant still rises: slope and overall change both hold."""
    write_grid(tmp_path / "grid", none={1: 1.0, 2: 2.0, 3: 2.0})  # depth 3 only as good as depth 2, plus noise
    results = collect([tmp_path / "grid"])
    none = {m.depth: m for m in results.models if m.skip_label == "none"}
    steps = [results.difference((none[b], "model"), (none[a], "model")) for a, b in ((1, 2), (2, 3))]
    assert steps[0].significant and steps[1].significant is False
    overall = results.difference((none[3], "model"), (none[1], "model"))
    per_level = slope(results, none)
    assert overall.significant and per_level.significant and trend_verdict(overall, per_level) == 1
    # with three depths the least-squares slope is half the deepest-minus-shallowest change
    assert per_level.value == pytest.approx(overall.value / 2, abs=1e-9)
    sentence = depth_trend(results, "none")
    assert sentence.startswith("Without skips, hd95 rises with depth")
    assert gives(sentence, overall) and gives(sentence, per_level) and all(gives(sentence, step) for step in steps)
    assert "(1 of 2 steps go that way" not in sentence and "2 of 2 steps go that way, 1 of them significant" in sentence
    assert "no monotone" not in sentence and "no trend" not in sentence

    write_grid(tmp_path / "flat", none={1: 2.0, 2: 2.0, 3: 2.0})
    flat = collect([tmp_path / "flat"])
    sentence = depth_trend(flat, "none")
    assert "hd95 changes with depth" in sentence and "no monotone change shown" in sentence

    def diff(value, significant):
        return Diff(value, value - 0.1, value + 0.1, significant, True)

    assert trend_verdict(diff(1, True), diff(0.5, True)) == 1 and trend_verdict(diff(-1, True), diff(-1, True)) == -1
    assert trend_verdict(diff(1, True), diff(-0.5, True)) == 0  # slope and change disagree
    assert trend_verdict(diff(1, True), diff(0.5, False)) == 0 and trend_verdict(diff(1, None), diff(1, True)) == 0


def test_no_sentence_calls_no_trend_beside_an_interval_that_excludes_zero(tmp_path):
    checked = 0
    for grid in ({1: 1.0, 2: 2.0, 3: 2.0}, {1: 2.0, 2: 2.0, 3: 2.0}):
        write_grid(tmp_path / str(grid), none=grid, drop_one=None, singles=None)
        results = collect([tmp_path / str(grid)])
        for sentence in findings(results) + answer(results, tmp_path / "answer.png").sentences:
            if "no trend" in sentence or "no monotone" in sentence:
                first = re.search(r"\(([+−]\d+\.\d+)(?: px)? \[([+−]\d+\.\d+), ([+−]\d+\.\d+)\]", sentence)
                low, high = (float(x.replace("−", "-")) for x in first.groups()[1:])
                assert low <= 0 <= high, sentence
                checked += 1
    assert checked  # the flat grid's hd95 sentence at least


def test_lowpass_leads_and_any_modes_work(report, tmp_path):
    assert MODES[0] == "mean"  # written first, reported second
    md = (report / "report.md").read_text()
    assert md.index("(lowpass:1 ablation)") < md.index("(mean ablation)")
    assert md.index("Test-time ablation (lowpass:1)") < md.index("Test-time ablation (mean)")
    assert md.index("`lowpass:1` (leads)") < md.index("`mean` (the contrast)")
    order = ["lowpass:1", "lowpass:2", "mean", "zero", "other"]
    results = collect([report.parent / "grid"])
    assert ablation_modes(results) == ["lowpass:1", "mean"] == ablation_modes(results, prefix="ablate")
    assert sorted(reversed(order), key=mode_order) == order

    write_grid(tmp_path / "grid", modes=("zero",), drop_one=None, singles=None)
    make_report([tmp_path / "grid"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "(zero ablation)" in md and "Test-time ablation (zero)" in md and "`zero`" in md
    assert "lowpass:1" not in md  # a mode that is not there is not mentioned


def test_missed_objects_show_in_the_empty_rate_and_the_nonempty_distance(tmp_path):
    empty = {(1, (), "model"): 0.25}  # a quarter of the depth-1 no-skip model's images: nothing predicted
    write_grid(tmp_path / "grid", empty=empty, drop_one=None, singles=None)
    make_report([tmp_path / "grid"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    results = collect([tmp_path / "grid"])
    model = model_of(results, 1, ())
    columns = table_columns(md, BOUNDARY)
    assert columns[4:9] == ["hd95 (px)", "hd95 non-empty (px)", "assd (px)", "assd non-empty (px)", "empty rate"]
    row = table_row(md, BOUNDARY, "1", "none", "none")
    found = [per_image_for(1, (), seed, empty=empty)["model"] for seed in SEEDS]
    kept = [float(column(values, "hd95")[column(values, "empty_rate") == 0].mean()) for values in found]
    labels = {"hd95_nonempty": "hd95 non-empty (px)", "empty_rate": "empty rate"}
    for metric, expected in (("hd95_nonempty", mean(kept)), ("empty_rate", 0.25)):
        stat = results.get(model, "model", metric)
        digits = 3 if metric == "empty_rate" else 2
        assert stat.mean == pytest.approx(expected) and row[columns.index(labels[metric])] == cell(stat, digits)
    # the diagonal-filled headline number grows with the missed objects, the non-empty one does not
    assert results.value(model, "model", "hd95") > 4 * results.value(model, "model", "hd95_nonempty")
    assert table_columns(md, PROBES)[4:7] == ["hd95 (px)", "hd95 non-empty (px)", "empty rate"]


def test_empty_predictions_get_a_caution(tmp_path):
    write_grid(tmp_path / "grid", empty={(1, (), "model"): 0.25})
    results = collect([tmp_path / "grid"])
    sentence = empty_predictions(results)
    stat = results.get(model_of(results, 1, ()), "model", "empty_rate")
    share = empty_share(results, model_of(results, 1, ()))
    assert share > 0.9  # a quarter of the images at the diagonal (~90 px) against ~1 px elsewhere
    assert states(sentence, 1, len(results.models), 25) and f"[{stat.low:.0%}, {stat.high:.0%}]" in sentence
    assert f"{share:.0%} of its hd95" in sentence
    make_report([tmp_path / "grid"], tmp_path / "out")
    assert sentence in (tmp_path / "out" / "report.md").read_text()


def test_the_empty_caution_weighs_the_share_of_the_distance():
    """The landed main job's depth-4 no-skip model: empty in 1.6 % of images, 5.65 px where both are present, 6.97 px
    in all: a fifth of its hd95 from the empty images, so no caution; at a quarter of the images empty there is one."""
    model = Model("shapes", "64", 4, "none")

    def results_with(rate: float, nonempty: float, mean: float) -> Results:
        stats = {(model, "model", "hd95", "mean"): Stat(mean, float("nan"), 3),
                 (model, "model", "empty_rate", "mean"): Stat(rate, float("nan"), 3),
                 (model, "model", "hd95_nonempty", "mean"): Stat(nonempty, float("nan"), 3)}  # fmt: skip
        return Results(stats=stats, params={model: 1}, runs={model: ["a"]}, files=[])

    calm = results_with(0.016, 5.65, 0.984 * 5.65 + 0.016 * 90.5)
    assert empty_share(calm, model) == pytest.approx(0.016 * 90.5 / (0.984 * 5.65 + 0.016 * 90.5))
    assert empty_share(calm, model) < 1 / 3 and empty_predictions(calm) is None
    heavy = results_with(0.25, 1.0, 0.75 + 0.25 * 90.5)
    assert empty_share(heavy, model) > 0.9 and "1 of 1 models" in empty_predictions(heavy)
    assert empty_share(results_with(0.0, 1.0, 1.0), model) == 0.0


def test_floor_that_loses_objects_gets_a_caution(tmp_path):
    empty = {(depth, kept, f"floor/{level}"): rate for depth in DEPTHS for kept in (tuple(range(depth)), ())
             for level, rate in ((2, 0.125), (3, 0.375)) if level <= depth}  # fmt: skip
    write_grid(tmp_path / "grid", empty=empty, drop_one=None, singles=None)
    results = collect([tmp_path / "grid"])
    sentence = vanishing_floor(results)
    assert states(sentence, 12, 2, 38, 3, 4, 4), sentence  # 12.5 % and 37.5 % of the images, printed rounded
    assert empty_predictions(results) is None  # the models themselves predicted every object


def test_drop_one_finding_ranks_the_dropped_skips(tmp_path):
    write_grid(tmp_path / "grid", drop_one={0: 0.6, 1: 0.8, 2: 0.9}, singles=None)
    results = collect([tmp_path / "grid"])
    (sentence,) = drop_one(results)
    margin = results.difference((model_of(results, 3, (1, 2)), "model"), (model_of(results, 3, (0, 2)), "model"))
    assert states(sentence, 3, 0) and gives(sentence, margin) and margin.significant
    assert "not firm" not in sentence and "Published findings" in sentence


def test_findings_need_their_data(tmp_path):
    write_grid(tmp_path / "grid", drop_one=None, singles=None)
    for path in (tmp_path / "grid").glob("d[23]_*"):  # depth 1 only: no trend, no drop-one set, one skip level
        shutil.rmtree(path)
    results = collect([tmp_path / "grid"])
    assert no_skip_trend(results) == [] and drop_one(results) == [] and single_vs_none(results) == []
    assert largest_shapley(results) is None and single_skip_ablation(results) is None
    sentence = all_vs_none(results)
    assert states(sentence, 1, 0.5, 1.0) and gives(sentence, results.difference(
        (model_of(results, 1, (0,)), "model"), (model_of(results, 1, ()), "model")))  # fmt: skip


def add_object_rows(grid: Path, detects, placed=None, spurious=None) -> None:
    """Per-object rows in every run of ``grid``: two objects per image in each size bin, the model, each floor and
    each probe key detecting all of a bin's objects or none, ``detects(depth, skips, source, bin) -> bool`` (or the
    share of images where it does); hd95 ``placed(depth, skips, source, bin)`` (default 1) per detected object;
    ``spurious(depth, skips, source, bin)`` (default 0) false-positive blobs per image."""
    names = bin_names(bin_edges())
    indices = resample_indices(IMAGES, 200, seed=0)
    for path in grid.glob("*/results.csv"):
        rows = read_results(path)
        run = {key: rows[0][key] for key in ("run", "dataset", "image_size", "depth", "skips", "params", "seed")}
        depth, skips = rows[0]["depth"], rows[0]["skips"]
        per_image = read_per_image(path.with_name("per_image.npz"))  # the per-object sums go beside the rest
        keys = feature_keys(depth, logits=False)
        for source in ("model", *(f"floor/{level}" for level in range(depth + 1)), *(f"probe/{k}" for k in keys)):
            sums = torch.zeros(IMAGES, 1, len(names), 7, dtype=torch.float64)
            sums[..., 0] = 2
            for b, name in enumerate(names):
                share = float(detects(depth, skips, source, name))  # True, False, or the share of images
                found = torch.zeros(IMAGES, dtype=torch.float64)
                found[: round(share * IMAGES)] = 2.0  # the first images detect both objects, the others none
                hd95 = 1.0 if placed is None else placed(depth, skips, source, name)
                sums[:, 0, b, 1:6] = found[:, None] * torch.tensor([1.0, hd95, 1.0, hd95**2, 1.0])
                sums[:, 0, b, 6] = 0.0 if spurious is None else spurious(depth, skips, source, name)
            rows += object_rows(source, sums, names, indices)
            per_image |= object_sums(source, sums, names)
        write_results(path, run, rows)
        write_per_image(path.with_name("per_image.npz"), per_image)


def test_object_findings_name_the_sizes_lost_to_resolution_and_to_the_missing_skips(tmp_path):
    def detects(depth, skips, source, name):
        small = name in ("0-4", "4-8")
        if source == "model" or source.startswith("probe/"):
            return not (small and depth == 3 and skips == "none")
        level = int(source.split("/")[1])
        if level == 1 and name == "8-16":
            return 7 / 16  # under half, but over too few images to be shown under half
        return not ((level == 2 and name == "0-4") or (level == 3 and small))

    write_grid(tmp_path / "grid", drop_one=None, singles=None)
    add_object_rows(tmp_path / "grid", detects)
    results = collect([tmp_path / "grid"])
    floors = floor_object_sizes(results)
    assert "a level loses an object size where its floor detects under half of those objects" in floors
    assert (
        "level 2 loses objects 0-4 px across (0% [0%, 0%] of 32 detected); level 3 loses objects 0-4 px across "
        "(0% [0%, 0%] of 32 detected), objects 4-8 px across" in floors
    )
    unsure = floors.split("not shown to be lost", 1)[1]
    assert "level 1: objects 8-16 px across (44% [" in unsure and "of 32 detected)" in unsure
    assert "level 1 loses" not in floors and "16-32" not in floors
    skips = objects_without_skips(results)
    assert skips.startswith("At depth 3 ")
    assert "0-4 px: 0% [0%, 0%] without skips against 100% [100%, 100%] with all (+1.00 [+1.00, +1.00]); 4-8" in skips
    assert "8-16" not in skips
    make_report([tmp_path / "grid"], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert floors in text and skips in text and "| 3 | none | 0.00 [0.00, 0.00] | 0.00 [0.00, 0.00] | 1.00" in text
    assert "| – | objects in the test split | 32 | 32 | 32 | 32 | 32 |" in text
    assert (tmp_path / "out" / "report_detection_by_size.png").is_file()


def test_found_vs_placed_tells_missed_from_misplaced_by_layer(tmp_path):
    """enc0 finds no small object (its floor finds all) and invents 3 blobs per image; enc3 finds them all but at
    hd95 4 against its floor's 1 (misplaced); dec0 of the all-skip model finds and places them as its floor does."""

    def detects(depth, skips, source, name):
        return not (source == "probe/enc0" and name in ("0-4", "4-8"))

    def placed(depth, skips, source, name):
        return 4.0 if source == "probe/enc3" or (source == "probe/dec0" and skips == "none") else 1.0

    def spurious(depth, skips, source, name):
        return 3.0 if source == "probe/enc0" and name == "0-4" else 0.0

    write_grid(tmp_path / "grid", drop_one=None, singles=None)
    add_object_rows(tmp_path / "grid", detects, placed, spurious)
    results = collect([tmp_path / "grid"])
    layers = layer_objects(results)
    assert layers.depth == 3 and list(layers.probes) == ["all", "none"]
    keys = layers.keys
    found, hd95, blobs = (layers.probes["all"][metric] for metric in ("detected", "hd95", "spurious"))
    assert found[keys.index("enc0")].mean == pytest.approx(3 / 5) and found[keys.index("dec0")].mean == 1.0
    assert blobs[keys.index("enc0")].mean == 3.0 and blobs[keys.index("dec0")].mean == 0.0
    assert layers.probes["none"]["hd95"][keys.index("dec0")].mean == pytest.approx(4.0)
    every, none = found_vs_placed(results)
    assert every.startswith("Found vs placed in the depth-3 all-skip U-Net (linear probes, object by object): ")
    assert (
        "enc0 finds 60% [60%, 60%] (floor 100%), places them within 1.00 px (floor 1.00 px) and predicts 3.00" in every
    )
    assert "enc3 finds 100% [100%, 100%] (floor 100%), places them within 4.00 px (floor 1.00 px)" in every
    assert "dec0 finds 100% [100%, 100%] (floor 100%), places them within 1.00 px" in every
    assert "missed, against what the floor finds: enc0; found objects placed furthest above the floor: enc3" in every
    assert "most spurious blobs: enc0." in every  # enc0 also misses most, so no shallow-vs-deep clause
    assert "invents objects" not in every
    assert "dec0 finds 100% [100%, 100%] (floor 100%), places them within 4.00 px (floor 1.00 px)" in none
    make_report([tmp_path / "grid"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert every in md and none in md and (tmp_path / "out" / "report_found_vs_placed.png").is_file()
    title = table_block(md, layer_objects_table(results).title)
    assert "| enc0 | 0 | 1 | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] | 0.60 [0.60, 0.60] |" in title


def test_per_object_numbers_are_bootstrapped_and_compared_paired_from_the_per_image_sums(tmp_path):
    """The all-skip model of depth 3 finds the small objects in every image, the no-skip one in the first half of the
    images only: the difference of their detected shares is paired image by image (the same draws for both), so its
    interval is the bootstrap of that half-and-half split alone; each model's own interval is the two-level one."""

    def detects(depth, skips, source, name):
        return 1.0 if skips != "none" or name != "0-4" else 0.5

    write_grid(tmp_path / "grid", drop_one=None, singles=None)
    add_object_rows(tmp_path / "grid", detects)
    results = collect([tmp_path / "grid"])
    every, none = model_of(results, 3, EVERY), model_of(results, 3, ())
    source = "objects/0-4"
    diff = results.difference((every, source), (none, source), "detected")
    assert diff.paired and diff.seeds == SEEDS and diff.significant
    assert diff.value == pytest.approx(0.5)
    # the per-image detected share is 1 - (1 for the first half, 0 for the rest): the bootstrap of a 0/1 mean
    samples = results.samples[none].objects[source]  # (S, M, 1, 7)
    found = samples[..., 0, 1] / samples[..., 0, 0]  # (S, M)
    seed_w, image_w = results.draws.weights(len(SEEDS), found.shape[1])
    expected = percentile_interval(((image_w @ (1 - found).T) * seed_w).sum(dim=1))
    assert (diff.low, diff.high) == pytest.approx(expected)
    stat = results.get(none, source, "detected")
    assert stat.mean == pytest.approx(0.5) and stat.low < 0.5 < stat.high
    assert results.get(every, source, "detected").low == 1.0  # every image finds every object
    same = results.difference((every, "objects/8-16"), (none, "objects/8-16"), "detected")
    assert same.paired and same.value == 0 and not same.significant


def test_html_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(PLOTS)
    assert not re.search(r'src="[^"]*\.png"', html)
    assert (
        "<table>" in html and "<code>" in html and re.search(r"<td class=num>3\.00 \[\d\.\d\d, \d\.\d\d\]</td>", html)
    )


def test_seeds_of_one_model_are_averaged(grid):
    results = collect([grid])
    assert len(results.files) == 24 and len(results.params) == 12
    model = model_of(results, 2, ())
    stat = results.get(model, "model", "hd95")
    assert stat.runs == 2 and stat.mean == pytest.approx(2.0) and stat.std == pytest.approx(0.2 * 2**0.5)
    assert results.get(model, "model", "hd95", "1").mean == pytest.approx(2.0)
    assert [m.skip_label for m in results.models if m.depth == 3] == ["all", "none", "0,1", "0,2", "1,2", "0", "1", "2"]


def test_default_out_dir_is_the_first_dir(grid, tmp_path):
    other = tmp_path / "other"
    write_grid(other, drop_one=None, singles=None)
    html_path = make_report([grid, other])
    assert html_path == grid / "report.html" and not (other / "report.md").exists()
    assert "36 results.csv files" in html_path.read_text()  # 24 + 12: both folders were read


def test_repeated_seed_is_noted(grid, tmp_path):
    copy = grid / "copy_of_d2_snone_seed0"
    shutil.copytree(grid / "d2_snone_seed0", copy)
    make_report([grid], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    notes = md.split("## Notes", 1)[1]
    assert "depth 2, skips none (shapes): 3 runs, seed 0 more than once" in notes
    assert table_row(md, BOUNDARY, "2", "none", "none", "3")[4].startswith("1.93 [")  # 1.8, 1.8, 2.2


def test_no_results_names_the_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.csv").write_text("a,b\n")
    with pytest.raises(ReportError, match=r"no results\.csv found under .*empty"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ReportError, match="missing.*does not exist"):
        make_report([tmp_path / "missing"], tmp_path / "out")


def test_missing_column_names_the_file_and_column(grid, tmp_path):
    bad = grid / "d1_snone_seed0" / "results.csv"
    lines = bad.read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, column in enumerate(header) if column != "params"]
    bad.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    with pytest.raises(ReportError, match=rf"{re.escape(str(bad))}: missing column params"):
        make_report([grid], tmp_path / "out")


def test_wandb_gets_one_report_run(grid, tmp_path, monkeypatch):
    import wandb

    calls = {}

    class FakeRun:
        def log(self, data):
            calls["log"] = data

    def init(**kwargs):
        calls["init"] = kwargs
        return FakeRun()

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "finish", lambda: calls.setdefault("finish", True))
    make_report([grid], tmp_path / "out", log_wandb=True)
    init = calls["init"]
    assert init["job_type"] == "report" and init["group"] == "grid" and init["project"] == "unetlab"
    assert init["dir"] == str(tmp_path / "out") and init["mode"] == "disabled"  # conftest: WANDB_MODE=disabled
    images = {key for key, value in calls["log"].items() if isinstance(value, wandb.Image)}
    assert images == {f"report/{name}" for name in PLOTS}
    assert isinstance(calls["log"]["report/table"], wandb.Table) and calls["finish"]


def test_bare_arguments_become_report_dirs():
    argv = ["unetlab-report", "ablate/quick", "it's", "report.wandb=true", "--cfg", "job", "-m"]
    assert dirs_to_override(argv) == [
        "unetlab-report", "report.wandb=true", "--cfg", "job", "-m", r"report.dirs=['ablate/quick','it\'s']",
    ]  # fmt: skip
    assert dirs_to_override(["unetlab-report", "report.dirs=[a,b]"]) == ["unetlab-report", "report.dirs=[a,b]"]
    with pytest.raises(ValueError, match="not both"):
        dirs_to_override(["unetlab-report", "c", "report.dirs=[a,b]"])


@pytest.mark.slow
def test_cli_writes_only_the_report(grid, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = {p.relative_to(grid) for p in grid.rglob("*")}
    proc = run_cli("unetlab-report", str(grid), cwd=cwd)
    assert "report.html" in proc.stdout
    assert list(cwd.iterdir()) == []
    assert {p.relative_to(grid) for p in grid.rglob("*")} - before == {Path(name) for name in REPORT_FILES}

    out = tmp_path / "elsewhere"
    run_cli("unetlab-report", f"report.dirs=[{grid}]", f"report.out_dir={out}", cwd=cwd)
    assert {p.name for p in out.iterdir()} == REPORT_FILES and list(cwd.iterdir()) == []

    proc = run_cli("unetlab-report", str(tmp_path / "cwd"), cwd=cwd, check=False)
    assert proc.returncode != 0 and "no results.csv found under" in proc.stderr and str(cwd) in proc.stderr
