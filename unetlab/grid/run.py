"""The main job's plan: expand an ``ablate`` grid into Hydra multirun sweeps of ``unetlab-train``.

A grid is ``depths`` x ``skips`` (skip-set kinds at every depth) plus ``deepest_skips`` (at the deepest depth
only), x ``seeds``. Kinds: ``all``, ``none``, ``single`` (each level alone), ``all_but_one`` (each level
dropped once), or an explicit list of levels. Sets that are the same at some depth (at depth 1, ``single``
is ``all``) are run once. ``all``/``none`` at every depth form one sweep; the other sets one sweep per depth,
because Hydra sweeps are cartesian products and those sets depend on the depth.
"""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException

from unetlab.atomic import write_json
from unetlab.conventions import feature_keys, parse_skips, skips_override, skips_to_path, skips_to_str
from unetlab.runs.run_dir import DIE_WITH_PARENT, die_with_parent

KINDS = ("all", "none", "single", "all_but_one")


def skip_sets(kind: str | Sequence[int], depth: int, levels: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """The skip sets (sorted level tuples) that ``kind`` names at ``depth``, of the architecture's skip ``levels``
    (default: every level 0..depth-1; a library U-Net may lack some, e.g. the full-resolution one)."""
    levels = tuple(range(depth)) if levels is None else tuple(levels)
    if kind == "all":
        return [levels]
    if kind == "none":
        return [()]
    if kind == "single":
        return [(level,) for level in levels]
    if kind == "all_but_one":
        return [tuple(lv for lv in levels if lv != level) for level in levels]
    if isinstance(kind, str):
        raise ValueError(f"ablate skip kind {kind!r} is unknown; allowed: {', '.join(KINDS)} or a list of levels")
    return [parse_skips(kind, depth)]


def plan_sweeps(
    depths: Sequence[int],
    skips: Sequence,
    deepest_skips: Sequence,
    seeds: Sequence[int],
    vary: dict[str, Sequence] | None = None,
    models: dict[str, Sequence[int]] | None = None,
    levels: Sequence[int] | None = None,
) -> list[list[str]]:
    """Override lists, one per ``unetlab-train -m`` sweep, covering the grid once; ``vary`` (``ablate.vary``: data
    key -> values, e.g. ``{"data.complexity": [0, 0.5, 1]}``) multiplies every sweep by those values; ``models``
    (``ablate.models``: architecture -> the skip levels it has at the deepest depth) repeats the grid for each
    architecture (``model=<name>``), its skip sets from its own levels.

    Deepest first (the per-depth sweeps from the deepest depth, then ``all``/``none`` with the depths descending): the
    longest jobs start first, so the launcher's workers run out of work at nearly the same time instead of one
    waiting for the other's last deep model at every sweep's end."""
    if not depths:
        raise ValueError("ablate.depths is empty")
    if models:
        return [
            [f"model={name}", *sweep]
            for name, levels in models.items()
            for sweep in plan_sweeps(depths, skips, deepest_skips, seeds, vary, levels=levels)
        ]
    seed_list = ",".join(str(int(s)) for s in seeds)
    sweeps, seen, last = [], set(), []
    generic = [kind for kind in skips if kind in ("all", "none")]
    if generic:
        descending = sorted(depths, reverse=True)
        last = [[f"model.depth={','.join(map(str, descending))}", f"model.skips={','.join(generic)}"]]
        seen |= {(d, skips_to_str(s)) for d in depths for kind in generic for s in skip_sets(kind, d)}
    deepest = max(depths)
    for depth in sorted(depths, reverse=True):
        kinds = [kind for kind in skips if kind not in ("all", "none")]
        kinds += list(deepest_skips) if depth == deepest else []
        values = []
        for kind in kinds:
            for skip_set in skip_sets(kind, depth, levels if depth == deepest else None):
                if (depth, skips_to_str(skip_set)) not in seen:
                    seen.add((depth, skips_to_str(skip_set)))
                    values.append(skips_override(skip_set, depth))
        if values:
            sweeps.append([f"model.depth={depth}", f"model.skips={','.join(values)}"])
    varied = [f"{key}={','.join(str(value) for value in values)}" for key, values in check_vary(vary).items()]
    return [[*sweep, *varied, f"seed={seed_list}"] for sweep in [*sweeps, *last]]


def check_vary(vary: dict[str, Sequence] | None) -> dict[str, list]:
    """``ablate.vary`` as ``{data key: [values]}``; ValueError naming the key unless each is a ``data.*`` key with a
    non-empty list of plain values (the run directories are named by them)."""
    checked = {}
    for key, values in dict(vary or {}).items():
        values = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else [values]
        if not str(key).startswith("data.") or not values:
            raise ValueError(f"ablate.vary.{key}: expected a data.* key with a list of values, e.g. "
                             "ablate.vary={data.complexity: [0, 0.5, 1]}")  # fmt: skip
        if any(not isinstance(value, (int, float, str)) or "," in str(value) for value in values):
            raise ValueError(f"ablate.vary.{key}={values}: values must be plain numbers or words")
        checked[str(key)] = values
    return checked


def model_levels(experiment: str, names: Sequence[str], depth: int, forwarded: Sequence[str]) -> dict[str, tuple]:
    """``ablate.models`` as {architecture: the skip levels it has at ``depth``}, each read from the model that its
    config builds there (``conf/model/<name>.yaml``); ValueError naming the architecture it cannot build."""
    from hydra import compose
    from hydra.utils import instantiate

    levels = {}
    for name in names:
        overrides = [f"experiment={experiment}", f"model={name}", f"model.depth={depth}", "model.skips=all"]
        try:
            cfg = compose("train", overrides=[*overrides, *train_overrides(forwarded)])
            levels[name] = tuple(instantiate(cfg.model, in_channels=1, num_classes=2).skip_levels)
        except (HydraException, OmegaConfBaseException, ValueError) as err:
            if isinstance(err, InstantiationException) and err.__cause__ is not None:
                err = err.__cause__
            raise ValueError(f"ablate.models: model={name} at depth {depth}: {str(err).splitlines()[0]}") from None
    return levels


def count_jobs(sweep: list[str]) -> int:
    """Jobs in a cartesian sweep: the product of the number of values of each override (Hydra's parser)."""
    total = 1
    for override in OverridesParser.create().parse_overrides(sweep):
        total *= len(list(override.sweep_iterator())) if override.is_sweep_override() else 1
    return total


def expand_sweep(sweep: list[str]) -> list[list[str]]:
    """Each job of a cartesian sweep as plain overrides, in Hydra's order (its parser)."""
    choices = [
        [f"{o.get_key_element()}={value}" for value in o.sweep_string_iterator()] if o.is_sweep_override()
        else [o.input_line]
        for o in OverridesParser.create().parse_overrides(sweep)
    ]  # fmt: skip
    return [list(job) for job in itertools.product(*choices)]


def check_grid(experiment: str, sweeps: list[list[str]], forwarded: Sequence[str]) -> list:
    """Compose every job's training config as its sweep will and check it as ``unetlab-train`` does, so that a config
    error stops the grid before the first model trains (ValueError naming the job and the key). Returns the composed
    configs, in the sweeps' order."""
    from hydra import compose
    from hydra.utils import instantiate

    from unetlab.grid.job import eval_options
    from unetlab.training.train import check_config

    configs = []
    for sweep in sweeps:
        for job in expand_sweep(sweep):
            try:
                cfg = compose("train", overrides=[f"experiment={experiment}", *job, *train_overrides(forwarded)])
                check_config(cfg)
                eval_options(cfg)
                instantiate(cfg.data)  # the data module checks its keys here; files are read only in setup()
                configs.append(cfg)
            except (HydraException, OmegaConfBaseException, ValueError) as err:
                if isinstance(err, InstantiationException) and err.__cause__ is not None:
                    err = err.__cause__  # the data module's own message names the key
                message = str(err).split("\n")[0]
                raise ValueError(f"the grid's job {' '.join(job)}: {message}") from None
    return configs


def with_data_group(data: str | None, forwarded: Sequence[str]) -> list[str]:
    """``ablate.data`` (a preset's data set, e.g. ``shapes3d``) as the jobs' ``data=...`` override, first, unless the
    command line chose a data set itself."""
    chosen = any(arg.split("=", 1)[0].lstrip("+~") == "data" for arg in forwarded)
    return [f"data={data}", *forwarded] if data and not chosen else list(forwarded)


def train_overrides(forwarded: Sequence[str]) -> list[str]:
    """The forwarded overrides that shape a training job's config: all but Hydra's own (``hydra/launcher=...``)."""
    return [arg for arg in forwarded if not arg.lstrip("+~").startswith("hydra")]


def drawn_keys(viz_keys, depth: int) -> list[str]:
    """The feature keys whose units are drawn, of the depth-``depth`` all-skip model: ``auto`` = enc1..enc{depth-1}
    (enc1 at depth 1), ``null`` or ``[]`` = none; a list is checked against that model's keys."""
    if viz_keys == "auto":
        return [f"enc{level}" for level in range(1, max(depth, 2))]
    keys = [viz_keys] if isinstance(viz_keys, str) else list(viz_keys or [])
    unknown = [key for key in keys if key not in feature_keys(depth)]
    if unknown:
        raise ValueError(
            f"ablate.viz_keys names {', '.join(unknown)}, but the drawn model (the depth-{depth} all-skip U-Net) has "
            f"the feature keys {', '.join(feature_keys(depth))}; use ablate.viz_keys=auto or some of those"
        )
    return keys


# The run directory of one grid cell, e.g. d4-s0_1_2_3-seed0 (skip set canonical): for run_dir_name, and as
# Hydra's sweep subdir (interpolations of the job's own config), so both name a cell the same way.
RUN_DIR = "d{depth}-s{skips}-seed{seed}"
SWEEP_SUBDIR = RUN_DIR.format(depth="${model.depth}", skips="${skipset:${model.skips},${model.depth}}", seed="${seed}")


def run_dir_name(depth: int, skips, seed: int, variant: dict | None = None, model: str | None = None) -> str:
    """The run directory of one grid cell: ``d4-s0_1_2_3-seed0``; with ``ablate.vary`` values (``variant``: key ->
    value) each is appended by its last name part, ``d4-s0_1_2_3-seed0-complexity0.5``; with ``ablate.models`` the
    architecture last, ``d4-s0_1_2_3-seed0-monai_dynunet``."""
    name = RUN_DIR.format(depth=depth, skips=skips_to_path(parse_skips(skips, depth)), seed=seed)
    name += "".join(f"-{key.rsplit('.', 1)[-1]}{value}" for key, value in (variant or {}).items())
    return name + (f"-{model}" if model else "")


def sweep_subdir(vary_keys: Sequence[str], models: bool = False) -> str:
    """Hydra's sweep subdir of a grid with ``ablate.vary`` keys: ``SWEEP_SUBDIR`` plus ``-<name>${<key>}`` each (and
    ``-<model option>`` with ``ablate.models``), so that it names a cell as ``run_dir_name`` does."""
    subdir = SWEEP_SUBDIR + "".join(f"-{key.rsplit('.', 1)[-1]}${{{key}}}" for key in vary_keys)
    return subdir + ("-${hydra:runtime.choices.model}" if models else "")


def parallel_overrides(jobs: int, forwarded: Sequence[str], cores: int | None = None) -> list[str]:
    """Overrides that train ``jobs`` models at once on this machine: Hydra's joblib launcher, each job on its share
    of the cores (``threads``), a line per epoch instead of progress bars that would overwrite each other, and none of
    the launcher's own log lines.

    Small U-Nets on a CPU use a second thread poorly (measured: 1.7x the throughput from two one-thread jobs over one
    two-thread job on 2 cores), so the quick preset trains two at a time. Nothing is added for ``jobs <= 1`` or when
    ``hydra/launcher`` is given (a cluster launcher decides for itself); keys given on the command line win.
    """
    if jobs <= 1 or any(arg.lstrip("+~").startswith(("hydra/launcher=", "hydra.launcher.")) for arg in forwarded):
        return []
    cores = cores or len(os.sched_getaffinity(0))
    wanted = {
        "hydra/launcher": "joblib",
        "hydra.launcher.n_jobs": str(jobs),
        "threads": str(max(1, cores // jobs)),
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "hydra/hydra_logging": "disabled",  # the launcher's job listing; unetlab-ablate names the sweep's jobs itself
    }
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in forwarded}
    return [f"{key}={value}" for key, value in wanted.items() if key not in given]


class Finished:
    """Counts the grid's evaluated runs (``results.csv`` written) and prints when the count grows, every few s."""

    def __init__(self, runs_dir: Path, total: int, start: float, interval: float = 5.0):
        self.runs_dir, self.total, self.start, self.interval = runs_dir, total, start, interval
        self.stop = threading.Event()
        self.count = self.done()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def done(self) -> int:
        return len(list(self.runs_dir.glob("*/results.csv"))) if self.runs_dir.is_dir() else 0

    def update(self) -> None:
        count = self.done()
        if count != self.count:
            self.count = count
            print(f"[unetlab-ablate] {count} of {self.total} models done ({time.time() - self.start:.0f} s)",
                  flush=True)  # fmt: skip

    def watch(self) -> None:
        while not self.stop.wait(self.interval):
            self.update()

    def __enter__(self) -> Finished:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.update()


def run_ablation(cfg, experiment: str, forwarded: Sequence[str] = ()) -> Path:
    """Train + evaluate the grid (Hydra sweeps of ``unetlab-train``), draw one model, write the report.

    ``forwarded``: overrides for the training jobs (``trainer.*``, ``data.*``, ``hydra/launcher=...``).
    ``ablate.jobs`` > 1 trains that many models at once with Hydra's joblib launcher (``parallel_overrides``).
    Returns the report's HTML path. Re-running resumes: finished runs are skipped, dead ones resume.
    """
    out_dir = Path(cfg.out_dir).resolve()
    runs_dir = out_dir / "runs"
    grid = cfg.ablate
    forwarded = with_data_group(grid.get("data"), forwarded)
    vary = check_vary(grid.get("vary"))
    models = model_levels(experiment, list(grid.get("models") or []), max(grid.depths), forwarded)
    sweeps = plan_sweeps(grid.depths, grid.skips, grid.get("deepest_skips", []), grid.seeds, vary, models)
    configs = check_grid(experiment, sweeps, forwarded)
    keys = drawn_keys(grid.get("viz_keys"), max(grid.depths))
    total = sum(count_jobs(sweep) for sweep in sweeps)
    parallel = parallel_overrides(int(grid.get("jobs", 1)), forwarded)
    start = time.time()
    at_once = f", {grid.jobs} at a time" if parallel else ""
    print(f"[unetlab-ablate] {total} models in {len(sweeps)} sweep(s){at_once} -> {runs_dir}", flush=True)
    done = 0
    with Finished(runs_dir, total, start):
        for index, sweep in enumerate(sweeps, 1):
            jobs = count_jobs(sweep)
            print(f"[unetlab-ablate] sweep {index}/{len(sweeps)}: jobs {done + 1}-{done + jobs} of {total}: "
                  f"{' '.join(sweep)}", flush=True)  # fmt: skip
            command = [
                sys.executable, "-m", "unetlab.cli.grid_job", "--multirun", "hydra.job.name=train",  # train.log
                f"experiment={experiment}", "test=false", *sweep,  # the evaluation scores the test split
                f"run_group={grid.name}", f"hydra.sweep.dir={runs_dir}",
                f"hydra.sweep.subdir='{sweep_subdir(list(vary), bool(models))}'",
                *parallel, *forwarded,
            ]  # fmt: skip
            env = {**os.environ, DIE_WITH_PARENT: "1"}  # a killed grid leaves no orphan training (run_dir.py)
            if parallel:  # side by side, wandb's per-run banners would bury the epoch lines; the end says how to sync
                env["WANDB_SILENT"] = "true"
            if subprocess.run(command, env=env, preexec_fn=die_with_parent).returncode != 0:
                raise RuntimeError(
                    f"sweep {index} failed (see above); re-run the same command to resume: finished runs are skipped"
                )
            done += jobs
    phases = {"train+eval": time.time() - start}

    first = {key: values[0] for key, values in vary.items()}
    drawn = runs_dir / run_dir_name(max(grid.depths), "all", int(grid.seeds[0]), first, next(iter(models), None))
    with silent_wandb():  # the closing lines say how to sync every offline run
        pictures = draw_units(drawn, max(grid.depths), keys, out_dir)
    phases["viz"] = time.time() - start - sum(phases.values())

    from unetlab.report import make_report
    from unetlab.runs.wandb_job import uses_wandb

    # When the training jobs log to wandb (their composed configs say so), the report's plots go there too, once.
    log_wandb = any(uses_wandb(cfg) for cfg in configs)
    with silent_wandb():
        html = make_report([runs_dir], out_dir, pictures=pictures, log_wandb=log_wandb, group=grid.name)
    phases["report"] = time.time() - start - sum(phases.values())
    breakdown = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items())
    print(f"[unetlab-ablate] done in {time.time() - start:.0f} s ({breakdown})", flush=True)
    print(f"[unetlab-ablate] report: {html}", flush=True)
    if (out_dir / "explorer.html").is_file():
        print(f"[unetlab-ablate] explorer: {out_dir / 'explorer.html'}", flush=True)
    patterns = [f"{runs_dir}/*/wandb/offline-run-*", f"{out_dir}/wandb/offline-run-*"]  # the runs and the report
    offline = {pattern: glob.glob(pattern) for pattern in patterns}
    if any(offline.values()):
        count, found = sum(map(len, offline.values())), " ".join(p for p, runs in offline.items() if runs)
        print(f"[unetlab-ablate] {count} offline wandb runs; upload them with: wandb sync {found}", flush=True)
    return html


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Only warnings and errors of logger ``name`` inside the block."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def silent_wandb() -> Iterator[None]:
    """wandb without its banners (``WANDB_SILENT``) for the grid's own viz and report runs."""
    before = os.environ.get("WANDB_SILENT")
    os.environ["WANDB_SILENT"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WANDB_SILENT", None)
        else:
            os.environ["WANDB_SILENT"] = before


def draw_units(run_dir: Path, depth: int, keys: list[str], out_dir: Path) -> list[tuple[str, str, Path]]:
    """Receptive fields, ERFs and top-9 patches of one model (``unetlab-viz``) as report pictures.

    Drawn once: a re-run whose pictures are all there (``viz/drawn.json`` names them) reuses them.
    """
    checkpoints = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    if not checkpoints or not keys:
        return []
    from unetlab.explain.pictures import report_pictures

    viz_dir = out_dir / "viz"
    record = viz_dir / "drawn.json"
    wanted = {"run": run_dir.name, "checkpoint": checkpoints[-1].name, "keys": keys}
    saved = json.loads(record.read_text()) if record.is_file() else {}
    if {k: saved.get(k) for k in wanted} == wanted and all(Path(p).is_file() for p in saved["paths"].values()):
        paths = {name: Path(p) for name, p in saved["paths"].items()}
    else:
        from unetlab.explain.viz import run_viz

        print(f"[unetlab-ablate] receptive fields and top-9 patches of {run_dir.name} -> {viz_dir}", flush=True)
        # Its table, file list, phase lines and bars: what they say is in viz/ and in the report.
        with contextlib.redirect_stdout(io.StringIO()), quiet_logger("unetlab"):
            paths = run_viz(checkpoints[-1], {"keys": keys, "out_dir": str(viz_dir), "progress": False})
        write_json(record, {**wanted, "paths": {name: str(p) for name, p in paths.items()}})
    return report_pictures(paths, f"the depth-{depth} all-skip model ({run_dir.name})", keys)
