"""unetlab-report on synthetic results.csv files with known numbers (see tests/fixtures_report.py)."""

from __future__ import annotations

import csv
import re
from itertools import pairwise
from pathlib import Path
from statistics import mean, stdev

import numpy as np
import pytest
from PIL import Image

from tests.fixtures_report import DEPTHS, DROP_ONE_HD95, SEEDS, rows_for, write_grid
from tests.helpers import run_cli
from unetlab.cli.report import dirs_to_override
from unetlab.report import ReportError, make_report
from unetlab.report.collect import collect
from unetlab.report.findings import (
    all_vs_none,
    drop_one,
    empty_predictions,
    findings,
    largest_shapley,
    no_skip_trend,
    probe_gaps,
    single_skip_ablation,
    vanishing_floor,
)

PLOTS = ["boundary_vs_depth", "probes_vs_floor", "shapley", "dice_vs_depth", "params_vs_depth"]
BOUNDARY = "Boundary metrics by depth and skip set"
PROBES = "Probe hd95 by level and the resolution floor (gap = probe − floor)"
SHAPLEY = "Shapley value of each skip level"
REPORT_FILES = {"report.md", "report.html", "report.csv", *(f"report_{name}.png" for name in PLOTS)}


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


def table_row(markdown: str, title: str, *cells: str) -> list[str]:
    """The cells of the one row that starts with ``cells`` in the Markdown table titled ``title``."""
    block = markdown.split(f"**{title}**", 1)[1].split("\n\n", 2)[1]
    prefix = "| " + " | ".join(cells) + " |"
    rows = [line for line in block.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"{title}: {prefix!r}: {len(rows)} rows"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_report_writes_files_and_plots(report):
    out = report
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    for name in PLOTS:
        image = np.asarray(Image.open(out / f"report_{name}.png").convert("L"), dtype=np.float64)
        assert image.shape[0] >= 400 and image.shape[1] >= 600, name
        assert image.std() > 10, f"{name} looks blank"
        assert (image < 128).mean() > 0.005, f"{name} has almost nothing drawn"


def test_report_tables_hold_seed_means(report):
    md = (report / "report.md").read_text()
    # depth, skip set, kept levels, runs, hd95, assd, nsd, bf1; each value is the mean of seeds at 0.9x and 1.1x
    assert table_row(md, BOUNDARY, "3", "none", "none", "2") == [
        "3", "none", "none", "2", "3.00 ± 0.42", "1.50 ± 0.21", "0.70 ± 0.10", "0.62 ± 0.09",
    ]  # fmt: skip
    assert table_row(md, BOUNDARY, "3", "all", "0,1,2", "2")[4] == "0.50 ± 0.07"
    assert table_row(md, BOUNDARY, "2", "none", "none", "2")[4] == "2.00 ± 0.28"
    assert table_row(md, BOUNDARY, "3", "0,2", "0,2", "2")[4] == "0.80 ± 0.11"
    # probes: depth, skip set, level, floor, probe enc, probe dec, gap enc, gap dec
    assert table_row(md, PROBES, "3", "none", "1")[3:] == ["0.50 ± 0.07", "1.60 ± 0.23", "2.50 ± 0.35", "1.10", "2.00"]
    assert table_row(md, PROBES, "3", "all", "3 (bottleneck)")[3:] == ["1.50 ± 0.21", "4.60 ± 0.65", "–", "3.10", "–"]
    # shapley: depth, skip set, ablation, level, phi hd95, phi dice
    assert table_row(md, SHAPLEY, "3", "all", "mean", "0")[4:] == ["-0.30 ± 0.04", "0.03 ± 0.00"]
    assert table_row(md, "Parameter counts", "2", "all", "0,1", "16,200")  # 1000 * 4**2 + 100 * 2 kept skips
    assert "![Boundary error vs depth](report_boundary_vs_depth.png)" in md

    with open(report / "report.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    (row,) = [r for r in rows if (r["depth"], r["skips"], r["source"], r["metric"], r["class"]) ==
              ("3", "none", "model", "hd95", "mean")]  # fmt: skip
    assert float(row["mean"]) == pytest.approx(3.0) and row["runs"] == "2" and row["skip_set"] == "none"


NUMBER = re.compile(r"(?<![\w.])[−+]?\d+(?:\.\d+)?")  # not the digits of names such as enc0 or hd95


def numbers(sentence: str) -> list[float]:
    """The numbers of a sentence, in order; − (U+2212) and + are signs."""
    return [float(number.replace("−", "-")) for number in NUMBER.findall(sentence)]


def states(sentence: str, *expected: float) -> bool:
    """Whether ``expected`` occur among the sentence's numbers in this order (gaps allowed), each as printed (to two
    decimals; pass a ratio already rounded to the one decimal it is printed with)."""
    found = iter(numbers(sentence))
    return all(any(abs(number - round(value, 2)) < 1e-9 for number in found) for value in expected)


def seed_values(depth: int, kept: tuple[int, ...], source: str = "model", metric: str = "hd95") -> list[float]:
    """The values tests/fixtures_report.py writes for one model's (source, metric), one per seed."""
    return [
        next(row["value"] for row in rows_for(depth, kept, seed, DROP_ONE_HD95) if row["source"] == source and
             row["metric"] == metric)
        for seed in SEEDS
    ]  # fmt: skip


def hd95(depth: int, kept: tuple[int, ...], source: str = "model") -> float:
    """A model's hd95 for ``source``, averaged over the seeds, as the report averages it."""
    return mean(seed_values(depth, kept, source))


def test_findings_are_computed_from_the_numbers(report):
    results = collect([report.parent / "grid"])
    md = (report / "report.md").read_text()
    section = md.split("## What the numbers show", 1)[1].split("\n## ", 1)[0]
    sentences = [line.removeprefix("- ") for line in section.strip().splitlines()]
    deepest = max(DEPTHS)
    every = tuple(range(deepest))
    without_one = {dropped: tuple(level for level in every if level != dropped) for dropped in every}
    deepest_sets = [every, (), *without_one.values()]  # the fixture's skip sets at depth 3

    trend = no_skip_trend(results)  # no-skip hd95 from the shallowest depth to the deepest
    first, last = hd95(DEPTHS[0], ()), hd95(deepest, ())
    assert states(trend, first, DEPTHS[0], last, deepest, last - first), trend
    assert ("rises" if last > first else "falls") in trend.split()
    steps = [hd95(b, ()) - hd95(a, ()) for a, b in pairwise(DEPTHS)]
    assert ("growing" in trend) == all(step > 0 for step in steps), trend

    versus = all_vs_none(results)  # all skips against none at the deepest depth, hd95 then ASSD
    with_skips, without = hd95(deepest, every), hd95(deepest, ())
    assd = [mean(seed_values(deepest, kept, metric="assd")) for kept in (every, ())]
    assert states(versus, deepest, with_skips, without, round(without / with_skips, 1), *assd), versus
    assert ("lower" if without > with_skips else "higher") in versus.split()

    probes = probe_gaps(results)  # probe minus floor at level 0 and at the bottleneck, then dec0 with / without skips

    def gap(kept: tuple[int, ...], key: str, level: int) -> float:
        return hd95(deepest, kept, f"probe/{key}") - hd95(deepest, kept, f"floor/{level}")

    shallow = mean(gap(kept, "enc0", 0) for kept in deepest_sets)
    bottleneck = mean(gap(kept, f"enc{deepest}", deepest) for kept in deepest_sets)
    decoder = [gap(every, "dec0", 0), gap((), "dec0", 0)]
    assert states(probes, deepest, shallow, 0, bottleneck, deepest, len(deepest_sets), *decoder), probes
    gaps = [shallow, bottleneck, *decoder]
    assert probes.count(" above") == sum(g >= 0 for g in gaps) and probes.count(" below") == sum(g < 0 for g in gaps)

    attribution = largest_shapley(results)  # the lowest φ of the deepest all-skip model, the total, and agreement

    def lowest_phi(depth: int) -> int:
        phi = {level: mean(seed_values(depth, tuple(range(depth)), f"shapley/mean/{level}")) for level in range(depth)}
        return min(phi, key=phi.get)

    phi = {level: mean(seed_values(deepest, every, f"shapley/mean/{level}")) for level in every}
    best = lowest_phi(deepest)
    several = [depth for depth in DEPTHS if depth > 1]  # all-skip models with more than one kept skip
    agreeing = sum(lowest_phi(depth) == best for depth in several)
    assert states(attribution, deepest, best, phi[best], sum(phi.values()), best, agreeing, len(several)), attribution
    assert ("lowers" if phi[best] < 0 else "raises") in attribution.split()

    (drop,) = drop_one(results)  # the all-but-one models at the deepest depth, the full model, margin and spread
    dropped = {level: mean(seed_values(deepest, kept)) for level, kept in without_one.items()}
    ranked = sorted(dropped, key=dropped.get)
    least_hurt, runner_up, top = ranked[0], ranked[1], deepest - 1
    margin = dropped[runner_up] - dropped[least_hurt]
    spread = max(stdev(seed_values(deepest, without_one[level])) for level in (least_hurt, runner_up))
    per_level = [value for level in every for value in (level, dropped[level])]
    assert states(drop, deepest, least_hurt, *per_level, with_skips, margin, spread), drop
    assert ("do not agree" in drop) == (least_hurt != top) and "agree" in drop.split()
    assert ("not firm" in drop) == (margin < spread), drop

    ablation = single_skip_ablation(results)  # test-time ablation of one skip: cheapest and dearest level
    cost = {level: hd95(deepest, every, f"ablate/mean/{level}") - with_skips for level in every}
    cheapest, dearest = min(cost, key=cost.get), max(cost, key=cost.get)
    assert states(ablation, deepest, cheapest, cost[cheapest], dearest, cost[dearest]), ablation

    assert empty_predictions(results) is None and vanishing_floor(results) is None  # nothing empty in the grid
    assert sentences == findings(results) == [trend, versus, probes, attribution, drop, ablation]


def test_empty_predictions_get_a_caution(grid, tmp_path):
    for seed in (0, 1):
        path = grid / f"d1_snone_seed{seed}" / "results.csv"
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "empty_rate": 0.25} for row in rows)
    make_report([grid], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Caution: in 1 of 9 models, prediction or ground truth of a class was empty" in md
    assert "(up to 25%, the depth-1 no-skip U-Net)" in md


def test_floor_that_loses_objects_gets_a_caution(grid, tmp_path):
    rates = {"floor/2": 0.1, "floor/3": 0.4}  # averaged over the models that have the level
    for path in grid.rglob("results.csv"):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({**row, "empty_rate": rates.get(row["source"], 0.0)} for row in rows)
    make_report([grid], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Caution: the resolution floor is empty from 10% of test images at level 2 to 40% at level 3" in md
    assert "half a 4×4-px cell vanish" in md
    assert "Caution: in" not in md  # the models themselves predicted every object


def test_drop_one_finding_says_when_results_disagree_with_wilm(tmp_path):
    write_grid(tmp_path / "grid", drop_one={0: 0.6, 1: 0.8, 2: 0.9})
    make_report([tmp_path / "grid"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "dropping the skip at level 0 hurts least" in md
    assert "dropping the top skip (level 2) is not best, so these results do not agree with Wilm" in md
    assert "not firm" not in md  # margin 0.20 px against seed stds of 0.08 and 0.11 px


def test_findings_need_their_data(tmp_path):
    write_grid(tmp_path / "grid", drop_one=None)
    for path in (tmp_path / "grid").glob("d[23]_*"):  # depth 1 only: no trend, no drop-one set, one skip level
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    make_report([tmp_path / "grid"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "rises from" not in md and "Wilm" not in md and "lowers hd95 most" not in md
    assert "At depth 1, the deepest with both, all skips give hd95 0.50 px against 1.00 px" in md


def test_html_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(PLOTS)
    assert not re.search(r'src="[^"]*\.png"', html)
    assert "<table>" in html and "3.00 ± 0.42" in html and "<code>" in html


def test_seeds_of_one_model_are_averaged(grid):
    results = collect([grid])
    assert len(results.files) == 18 and len(results.params) == 9
    (model,) = [m for m in results.models if m.depth == 2 and m.skips == "none"]
    stat = results.get(model, "model", "hd95")
    assert stat.runs == 2 and stat.mean == pytest.approx(2.0) and stat.std == pytest.approx(0.2 * 2**0.5)
    assert results.get(model, "model", "hd95", "1").mean == pytest.approx(2.0)
    assert [m.skip_label for m in results.models if m.depth == 3] == ["all", "none", "0,1", "0,2", "1,2"]


def test_default_out_dir_is_the_first_dir(grid, tmp_path):
    other = tmp_path / "other"
    write_grid(other, drop_one=None)
    html_path = make_report([grid, other])
    assert html_path == grid / "report.html" and not (other / "report.md").exists()
    assert "30 results.csv files" in html_path.read_text()  # 18 + 12: both folders were read


def test_repeated_seed_is_noted(grid, tmp_path):
    copy = grid / "copy_of_d2_snone_seed0"
    copy.mkdir()
    (copy / "results.csv").write_bytes((grid / "d2_snone_seed0" / "results.csv").read_bytes())
    make_report([grid], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    notes = md.split("## Notes", 1)[1]
    assert "depth 2, skips none (shapes): 3 runs, seed 0 more than once" in notes
    assert table_row(md, BOUNDARY, "2", "none", "none", "3")[4] == "1.93 ± 0.23"  # 1.8, 1.8, 2.2


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
