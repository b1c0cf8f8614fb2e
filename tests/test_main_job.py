"""The main job: the grid plan covers every cell once, and a shrunken ``unetlab-ablate`` runs end to end."""

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import run_cli
from unetlab.grid.run import count_jobs, drawn_keys, parallel_overrides, plan_sweeps, run_dir_name, skip_sets
from unetlab.runs.run_dir import hold_run_dir


def cells_of_sweeps(sweeps: list[list[str]]) -> list[tuple[int, str, int]]:
    """Every (depth, canonical skip set, seed) that the sweeps run, expanded by hand (not with Hydra's parser)."""
    cells = []
    for sweep in sweeps:
        values = {}
        for override in sweep:
            key, text = override.split("=", 1)
            parts, depth_items, buf = [], 0, ""
            for char in text:  # split on commas outside brackets: model.skips=all,[0],[1]
                depth_items += (char == "[") - (char == "]")
                if char == "," and depth_items == 0:
                    parts.append(buf)
                    buf = ""
                else:
                    buf += char
            values[key] = [*parts, buf]
        for depth, skips, seed in itertools.product(values["model.depth"], values["model.skips"], values["seed"]):
            depth = int(depth)
            name = run_dir_name(depth, skips.strip("[]") if skips.startswith("[") else skips, int(seed))
            cells.append((depth, name.split("-s", 1)[1].rsplit("-seed", 1)[0], int(seed)))
    return cells


def expected_cells(depths, skips, deepest_skips, seeds) -> set[tuple[int, str, int]]:
    """The grid by its definition: every kind at every depth, the deepest-only kinds at the deepest depth."""
    cells = set()
    for depth in depths:
        kinds = [*skips, *(deepest_skips if depth == max(depths) else [])]
        for kind, seed in itertools.product(kinds, seeds):
            levels = range(depth)
            sets = {
                "all": [tuple(levels)],
                "none": [()],
                "single": [(lv,) for lv in levels],
                "all_but_one": [tuple(x for x in levels if x != lv) for lv in levels],
            }[kind]
            cells |= {(depth, "_".join(map(str, s)) or "none", seed) for s in sets}
    return cells


@pytest.mark.parametrize(
    ("depths", "skips", "deepest", "seeds", "models"),
    [
        ([1, 2, 3, 4], ["all", "none"], ["single"], [0], 12),  # the quick preset
        ([1, 2, 3, 4, 5, 6], ["all", "none", "single", "all_but_one"], [], [0, 1, 2], 50),  # the full preset
        ([2, 3], ["single"], ["all_but_one"], [0, 1], 8),
    ],
)
def test_plan_covers_every_cell_once(depths, skips, deepest, seeds, models):
    sweeps = plan_sweeps(depths, skips, deepest, seeds)
    cells = cells_of_sweeps(sweeps)
    assert len(cells) == len(set(cells)), "a cell is trained twice"
    assert set(cells) == expected_cells(depths, skips, deepest, seeds)
    assert len(cells) == models * len(seeds)
    assert sum(count_jobs(sweep) for sweep in sweeps) == len(cells)  # what the progress line counts


def test_the_longest_jobs_come_first():
    """The quick grid: the depth-4 single skips first, then all/none from depth 4 down, so each sweep (and the grid)
    ends with its shortest jobs and the two workers finish together."""
    sweeps = plan_sweeps([1, 2, 3, 4], ["all", "none"], ["single"], [0, 1, 2])
    assert sweeps == [
        ["model.depth=4", "model.skips=[0],[1],[2],[3]", "seed=0,1,2"],
        ["model.depth=4,3,2,1", "model.skips=all,none", "seed=0,1,2"],
    ]


def test_single_skip_at_depth_one_is_the_all_skip_model():
    assert skip_sets("single", 1) == skip_sets("all", 1) == [(0,)]
    assert skip_sets("all_but_one", 1) == skip_sets("none", 1) == [()]
    sweeps = plan_sweeps([1], ["all", "none", "single", "all_but_one"], [], [0])
    assert sum(count_jobs(sweep) for sweep in sweeps) == 2


def test_bad_grid_names_the_kind_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'some'.*allowed: all, none, single, all_but_one"):
        plan_sweeps([2], ["some"], [], [0])
    with pytest.raises(ValueError, match="ablate.depths is empty"):
        plan_sweeps([], ["all"], [], [0])
    with pytest.raises(ValueError, match="names level 3, but a depth-2 U-Net"):
        plan_sweeps([2], [[3]], [], [0])


def test_parallel_jobs_use_joblib_with_a_share_of_the_cores_each():
    assert parallel_overrides(2, [], cores=2) == [
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "hydra/hydra_logging=disabled",
    ]  # fmt: skip
    assert "threads=4" in parallel_overrides(4, [], cores=16)
    assert parallel_overrides(1, [], cores=2) == []
    # A launcher on the command line decides for itself; keys given there win.
    assert parallel_overrides(2, ["hydra/launcher=slurm"], cores=2) == []
    assert parallel_overrides(2, ["hydra.launcher.n_jobs=3"], cores=2) == []
    assert "threads=1" not in parallel_overrides(2, ["threads=2"], cores=2)


@pytest.mark.slow
def test_shrunken_main_job_runs_end_to_end(tmp_path):
    """unetlab-ablate from an empty folder: 4 models trained and evaluated, one drawn, the report written."""
    grid = [
        "ablate.depths=[1,2]", "ablate.skips=[all,none]", "ablate.deepest_skips=[]", "ablate.viz_keys=[enc1]",
        "ablate.seeds=[0]",
    ]  # fmt: skip
    small = [
        "logger=csv", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.image_size=32",
        "data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=8", "model.base_channels=4",
        "eval.probe_steps=5",
    ]  # fmt: skip
    proc = run_cli("unetlab-ablate", *grid, *small, cwd=tmp_path, timeout=600)
    out = tmp_path / "ablate" / "quick"
    assert "[unetlab-ablate] 4 models in 1 sweep(s), 2 at a time" in proc.stdout
    assert "[unetlab-ablate] 4 of 4 models done" in proc.stdout
    assert "[unetlab] d2-snone-seed0 epoch 1/1: train/loss" in proc.stdout  # a line per epoch, no bars
    assert f"report: {out / 'report.html'}" in proc.stdout
    ending = proc.stdout.split("[unetlab-ablate] 4 of 4 models done", 1)[1].strip().splitlines()[1:]
    assert len(ending) <= 5, ending  # where the drawings, report and explorer are, and the times; no banners

    # run directories join the kept levels with "_" (no commas for Hydra's command line); results.csv keeps "0,1"
    kept = {d: (",".join(map(str, range(d))), "none") for d in (1, 2)}
    runs = {f"d{d}-s{s.replace(',', '_')}-seed0": (d, s) for d in (1, 2) for s in kept[d]}
    assert sorted(p.name for p in (out / "runs").iterdir() if p.is_dir()) == sorted(runs)
    hd95 = {}
    for name, (depth, skips) in runs.items():
        run = out / "runs" / name
        config = (run / ".hydra" / "config.yaml").read_text()
        assert "max_epochs: 1" in config and f"depth: {depth}" in config
        log = (run / "train.log").read_text()  # the run's own lines, though the console was shared
        assert f"[unetlab] {name} epoch 1/1: train/loss" in log and f"[unetlab] {name} eval: probes of" in log
        metrics = json.loads((run / "metrics.json").read_text())
        assert "eval/model/dice" in metrics and "val/dice" in metrics  # trained, then evaluated
        assert "test/dice" not in metrics  # no second test pass: the evaluation scored the test split
        with open(run / "results.csv") as handle:
            rows = list(csv.DictReader(handle))
        sources = {row["source"] for row in rows}
        assert {"model", f"probe/enc{depth}", "probe/dec0", f"floor/{depth}"} <= sources
        assert any(s.startswith("shapley/mean/") for s in sources) == (skips != "none")
        (row,) = [r for r in rows if (r["source"], r["metric"], r["class"]) == ("model", "hd95", "mean")]
        assert (row["depth"], row["skips"], row["n"]) == (str(depth), skips, "16")
        hd95[(depth, skips)] = float(row["value"])

    # The report's seed-averaged table holds the numbers of the runs (one seed: the same numbers).
    with open(out / "report.csv") as handle:
        rows = list(csv.DictReader(handle))
    table = [r for r in rows if (r["source"], r["metric"], r["class"]) == ("model", "hd95", "mean")]
    assert {(int(r["depth"]), r["skips"]): float(r["mean"]) for r in table} == pytest.approx(hd95)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # self-contained: plots and the unit pictures inlined
    assert "Top-9 patches of enc1" in (out / "report.md").read_text()
    assert "not enough data for any finding" not in (out / "report.md").read_text()  # the pictures have no findings
    assert (out / "viz").is_dir() and list((out / "viz").glob("*.png"))
    for name in ("report_predictions.png", "report_probe_maps.png"):  # the effect as pictures, in report.html too
        assert (out / name).stat().st_size > 10_000 and name.removesuffix(".png") in (out / "report.md").read_text()
    check_real_explorer(out)

    # Re-running the same command trains nothing again.
    again = run_cli("unetlab-ablate", *grid, *small, cwd=tmp_path, timeout=600)
    assert again.stdout.count("is finished (metrics.json exists); not training again") == 4


def check_real_explorer(out: Path) -> None:
    """explorer.html of a real grid, in chromium (when there is one): the hd95 shown for each chosen image and model
    is that image's value in the model's per_image.npz, and a click in the fields view boxes the unit's theoretical
    field, receptive_fields(net)[key].size px wide (clipped to the image), of the drawn model."""
    from tests.test_explorer import BROWSER_MISSING, Opened, embedded, sync_playwright
    from unetlab.metrics.classes import COLUMNS as PER_IMAGE_COLUMNS
    from unetlab.receptive_field import receptive_fields, unit_field
    from unetlab.runs.checkpoint import load_run
    from unetlab.runs.results import read_per_image

    page = out / "explorer.html"
    data = embedded(page.read_text())
    assert page.stat().st_size < 15e6 and len(data["models"]) == 4 and len(data["images"]) >= 2
    if BROWSER_MISSING:
        print(f"explorer not opened in a browser: {BROWSER_MISSING}")
        return
    drawn = load_run(next((out / "runs" / "d2-s0_1-seed0" / "checkpoints").glob("best-*.ckpt")))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        opened = Opened(browser, page)
        for i, image in enumerate(data["images"]):
            for m, model in enumerate(data["models"]):
                opened.select("predictions", "image", str(i))
                opened.select("predictions", "model", str(m))
                per_image = read_per_image(out / "runs" / model["run"] / "per_image.npz")["model"]
                expected = float(per_image[image["index"], :, PER_IMAGE_COLUMNS.index("hd95")].mean())
                assert opened.text("predictions", "hd95") == f"{expected:.2f} px"
        for key, level in (("enc1", 1), ("enc2", 2)):
            opened.select("fields", "key", key)
            canvas = opened.page.locator('[data-view="fields"] canvas.main')
            box = canvas.bounding_box()
            canvas.click(position={"x": 16.5 * box["width"] / 32, "y": 16.5 * box["height"] / 32})  # pixel (16, 16)
            y0, y1, x0, x1 = unit_field(drawn.net, key, 16 >> level, 16 >> level)
            assert y1 - y0 == x1 - x0 == receptive_fields(drawn.net)[key].size  # an encoder field: the same everywhere
            clipped = (min(y1, 32) - max(y0, 0), min(x1, 32) - max(x0, 0))
            assert opened.text("fields", "box-size") == f"{clipped[0]} x {clipped[1]} px"
        opened.close()
        browser.close()


def test_viz_keys_auto_fit_the_drawn_model_and_a_list_is_checked():
    assert drawn_keys("auto", 4) == ["enc1", "enc2", "enc3"]
    assert drawn_keys("auto", 1) == ["enc1"]
    assert drawn_keys(["enc1", "dec0"], 2) == ["enc1", "dec0"]
    assert drawn_keys(None, 3) == []
    with pytest.raises(ValueError, match=r"ablate.viz_keys names enc3, but the drawn model \(the depth-2 all-skip"):
        drawn_keys(["enc1", "enc3"], 2)


SMALL = [
    "logger=csv", "trainer.enable_progress_bar=false", "data.image_size=32", "data.train_size=32", "data.val_size=16",
    "data.test_size=16", "data.batch_size=8", "model.base_channels=4", "eval.probe_steps=5",
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ablate.depths=[1,2]", "ablate.viz_keys=[enc3]"], "ablate.viz_keys names enc3, but the drawn model"),
        (
            ["ablate.depths=[2,3]", "data.image_size=36"],
            "the grid's job model.depth=3 model.skips=[0] seed=0: data.image_size=36 is not a multiple of "
            "2**model.depth = 8",
        ),
        (["ablate.depths=[2]", "data.detail=3"], "data.detail=3 must lie in [0, 1]"),
    ],
)
def test_grid_config_errors_are_found_before_the_first_model_trains(tmp_path, args, message):
    proc = run_cli("unetlab-ablate", *args, *SMALL[:1], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr
    assert not (tmp_path / "ablate" / "quick" / "runs").exists()


@pytest.mark.slow
def test_killed_main_job_resumes_what_is_missing(tmp_path):
    """kill -9 of unetlab-ablate once one model is evaluated: no training outlives it, and the same command then
    trains only the unfinished models (finished ones untouched), evaluates what is missing, reports every model."""
    args = ["ablate.depths=[1,2]", "ablate.skips=[all,none]", "ablate.deepest_skips=[]", "ablate.viz_keys=[enc1]",
            "ablate.seeds=[0]", "trainer.max_epochs=6", "data.train_size=96", *SMALL[:1], *SMALL[2:]]  # fmt: skip
    script = Path(sys.executable).parent / "unetlab-ablate"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([str(script), *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    runs = tmp_path / "ablate" / "quick" / "runs"
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not list(runs.glob("*/results.csv")):
        time.sleep(0.05)
    assert proc.poll() is None, "the main job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    finished = {path: path.stat().st_mtime_ns for path in runs.glob("*/checkpoints/*.ckpt")
                if (path.parents[1] / "metrics.json").exists()}  # fmt: skip
    assert finished
    run_dirs = [path for path in runs.iterdir() if path.is_dir()]
    for run in run_dirs:  # every lock is free again: nothing of the killed grid still runs
        with hold_run_dir(run):
            pass

    again = run_cli("unetlab-ablate", *args, cwd=tmp_path, timeout=600)
    finished_runs = {path.parents[1] for path in finished}
    assert again.stdout.count("is finished (metrics.json exists); not training again") == len(finished_runs)
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # not rewritten
    assert len(run_dirs) <= 4 and all((run / "results.csv").exists() for run in runs.iterdir() if run.is_dir())
    with open(tmp_path / "ablate" / "quick" / "report.csv") as handle:
        reported = {(row["depth"], row["skips"]) for row in csv.DictReader(handle)}
    assert reported == {("1", "0"), ("1", "none"), ("2", "0,1"), ("2", "none")}


def test_a_varied_data_key_multiplies_the_grid_and_names_the_run_dirs():
    from unetlab.grid.run import check_vary, sweep_subdir

    sweeps = plan_sweeps([4], ["all", "none"], [], [0, 1], vary={"data.complexity": [0, 0.5, 1]})
    assert sum(count_jobs(sweep) for sweep in sweeps) == 2 * 2 * 3
    assert all("data.complexity=0,0.5,1" in sweep for sweep in sweeps)
    assert run_dir_name(4, "all", 0, {"data.complexity": 0.5}) == "d4-s0_1_2_3-seed0-complexity0.5"
    assert sweep_subdir(["data.complexity"]).endswith("-seed${seed}-complexity${data.complexity}")
    for bad in ({"model.depth": [1, 2]}, {"data.complexity": []}, {"data.kinds": [["star"]]}):
        with pytest.raises(ValueError, match="ablate.vary"):
            check_vary(bad)


@pytest.mark.parametrize(
    ("experiment", "models"), [("quick", 36), ("full", 150), ("wilm", 18), ("kamath", 18), ("luo", 36)]
)
def test_every_preset_composes_and_its_grid_passes_the_checks(experiment, models):
    """Every job of every preset composes and passes the training and evaluation checks (as unetlab-ablate runs
    them before training the first model)."""
    from hydra import compose, initialize_config_dir

    from tests.helpers import CONFIG_DIR
    from unetlab.grid.run import check_grid, check_vary

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        grid = compose("ablate", overrides=[f"experiment={experiment}"]).ablate
        vary = check_vary(grid.get("vary"))
        sweeps = plan_sweeps(grid.depths, grid.skips, grid.get("deepest_skips", []), grid.seeds, vary)
        assert sum(count_jobs(sweep) for sweep in sweeps) == models
        if experiment == "full":  # 150 jobs to compose: its sweeps are the quick preset's kinds at more depths
            sweeps = [sweeps[0]]
        check_grid(experiment, sweeps, [])
        with pytest.raises(ValueError, match="eval.shifts: shift 'fog:1'"):
            check_grid(experiment, sweeps, ["++eval.shifts=[fog:1]"])
