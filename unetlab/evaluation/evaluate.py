"""``evaluate(run)``: every number of the results table for one trained model (``docs/results-table.md``).

Sources: ``model``; ``probe/<key>`` (1x1 probes on frozen features); ``floor/<level>`` (resolution floors);
``ablate/<mode>/<levels>`` (test-time ablation of every non-empty subset of the kept skips);
``shapley/<mode>/<level>`` (exact Shapley values from the same subset evaluations); ``objects/<bin>`` and
``floor/<level>/objects/<bin>`` (per object); ``shift/<shift>`` and ``susceptibility/<shift>/<key>`` (test-time
shifts, ``shifts.py``). One pass over the test split: the encoder runs once per batch and every decoder variant
reuses its features.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from unetlab import sources
from unetlab.atomic import write_json
from unetlab.bootstrap import resample_indices
from unetlab.evaluation.ablations import shapley_values, subsets
from unetlab.evaluation.erf_rows import RESAMPLES as ERF_RESAMPLES
from unetlab.evaluation.erf_rows import erf_rows
from unetlab.evaluation.options import EvalOptions
from unetlab.evaluation.parts import AblationPart, FloorPart, ModelPart, Part, ProbePart, TestBatch
from unetlab.evaluation.probes import train_probes
from unetlab.evaluation.rows import object_rows, object_sums, source_rows, tolerance_rows
from unetlab.evaluation.shifts import score_shifts, susceptibility_row
from unetlab.metrics import BoundaryMetrics, ObjectMetrics
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.runs.checkpoint import LoadedRun, load_run
from unetlab.runs.label_maps import LabelMapRecorder
from unetlab.runs.phases import Phases
from unetlab.runs.results import COLUMNS, run_columns, write_per_image, write_results
from unetlab.runs.run_dir import hold_run_dir
from unetlab.runs.wandb_job import wandb_job


def evaluate(
    run: LoadedRun, options: EvalOptions, labels: LabelMapRecorder | None = None
) -> tuple[list[dict], dict[str, Tensor]]:
    """All rows of ``run``'s results table (``source_rows``: value, std, n, empty rate, interval, unit; then the
    model's ``nsd@τ``, ``bf1@τ`` rows and the per-object rows), and the per-image values behind them: a boundary
    source -> (M, C-1, 9) (``BoundaryMetrics.per_image_values``), a per-object source -> (M, C-1, 7) sums
    (``object_sums``).

    One pass over the test split feeds every part (``parts.py``): the model, its test-time ablations, its probes and
    the resolution floors; then the shifts and the ERFs, which need passes of their own. ``labels``: if given,
    receives the label maps of the model, the probes, the floors and the ground truth of the first test images."""
    phase = Phases(run.run_dir.name, "eval", quiet=options.progress)  # a line per phase where no bar shows progress
    # channels_last: same maths, faster convolutions on CPU (scripts/bench_train.py).
    net = run.net.eval().to(options.device, memory_format=protocol.channels_last(run.net.spatial_dims))
    datamodule = run.datamodule
    dims = net.spatial_dims
    if options.erf and dims != 2:
        raise ValueError("eval.erf=true: the ERF rows are measured on image canvases; volumes have none yet "
                         "(unetlab-viz draws a volume's ERFs)")  # fmt: skip

    def new_metric(tolerances: tuple[float, ...] = ()) -> BoundaryMetrics:
        return BoundaryMetrics(
            net.num_classes, options.tolerance, datamodule.ignore_index, datamodule.spacing, tolerances, dims
        ).to(options.device)

    def new_objects() -> ObjectMetrics:
        return ObjectMetrics(
            net.num_classes, datamodule.ignore_index, datamodule.spacing, tuple(options.object_bins), dims
        )

    parts = measurement_parts(run, net, options, new_metric, new_objects if options.objects else None, phase)
    loader = DataLoader(datamodule.datasets["test"], batch_size=options.batch_size, shuffle=False)
    with torch.no_grad():
        for images, masks in tqdm(loader, desc="test", disable=not options.progress, leave=False):
            batch = TestBatch.of(net, images.to(options.device), masks.to(options.device))
            for part in parts:
                part.update(batch, labels)
    phase.done("test split scored: the model, its probes and its ablations")
    for part in parts:
        part.finish(labels)
        if part.done:
            phase.done(part.done)
    boundary = {source: metric for part in parts for source, metric in part.boundary.items()}
    objects = {source: metric for part in parts for source, metric in part.objects.items()}

    shift_histograms = {}
    if options.shifts:
        shifted, shift_histograms = score_shifts(
            net, datamodule, options.shifts, new_metric, options.batch_size, options.device, options.seed,
            options.progress,
        )  # fmt: skip
        boundary |= shifted
        phase.done(f"{len(options.shifts)} shifts")
    per_image = {source: metric.per_image_values() for source, metric in boundary.items()}
    for mode in options.ablate_modes:
        per_image.update(shapley_per_image(per_image, net.skip_levels, mode))

    indices = resample_indices(len(per_image[sources.MODEL]), options.resamples, seed=options.seed)
    unit = datamodule.unit
    rows = []
    for source, values in per_image.items():
        rows += source_rows(source, values, indices, unit=unit, empty_rate=sources.kind(source) != "shapley")
    model = boundary[sources.MODEL]
    rows += tolerance_rows(sources.MODEL, model.tolerance_values(), model.tolerance_columns, indices)
    sums = {}
    for source, metric in objects.items():
        values = metric.per_image_values()
        rows += object_rows(source, values, metric.bin_names, indices, unit=unit)
        sums |= object_sums(source, values, metric.bin_names)
    rows += [susceptibility_row(source, *hists, indices) for source, hists in shift_histograms.items()]
    phase.done(f"{len(rows)} rows with intervals")
    if options.erf:
        test = datamodule.datasets["test"]
        images = torch.stack([test[i][0] for i in range(min(options.erf_images, len(test)))])
        init = protocol.random_init_like(net, int(run.cfg.get("seed", 0))).to(options.device)
        erf_indices = resample_indices(len(images), ERF_RESAMPLES, seed=options.seed)
        rows += erf_rows(net, init, images.to(options.device), erf_indices)
        phase.done("effective receptive fields")
    return rows, per_image | sums


def measurement_parts(
    run: LoadedRun,
    net: UNetLike,
    options: EvalOptions,
    new_metric: Callable[..., BoundaryMetrics],
    new_objects: Callable[[], ObjectMetrics] | None,
    phase: Phases,
) -> list[Part]:
    """The parts that ``options`` asks for, in the order their sources go to the table: the model, the ablations of
    every non-empty subset of the kept skips in each mode, the probes (fit here), the floors."""
    parts: list[Part] = [ModelPart(new_metric(tuple(options.tolerances)), new_objects() if new_objects else None)]
    ablations = {
        sources.ablation(mode, ablated): {level: mode for level in ablated}
        for mode in options.ablate_modes
        for ablated in subsets(net.skip_levels)
        if ablated
    }
    if ablations:
        parts.append(AblationPart(net, ablations, new_metric))
    if options.probes:
        probes = train_probes(
            net,
            run.datamodule.datasets["train"],
            net.num_classes,
            steps=options.probe_steps,
            batch_size=options.batch_size,
            pool=options.probe_images,
            seed=probe_pool_seed(options.seed, run.cfg),
            ignore_index=run.datamodule.ignore_index,
            device=options.device,
            progress=options.progress,
        )
        phase.done(f"probes of {len(probes)} keys fit")
        parts.append(ProbePart(probes, new_metric, new_objects))
    if options.floors:
        parts.append(
            FloorPart(net.depth, net.num_classes, run.datamodule.ignore_index, new_metric, new_objects, options.device)
        )
    return parts


def probe_pool_seed(seed: int, cfg: DictConfig) -> int:
    """The seed of the probes' pool of training images: ``eval.seed`` plus the run's seed, so each run (seed) of a
    model draws its own pool and the variation between pools enters the intervals through the seed level."""
    return int(seed) + int(cfg.get("seed", 0) or 0)


def shapley_per_image(per_image: dict[str, Tensor], kept: tuple[int, ...], mode: str) -> dict[str, Tensor]:
    """``shapley/<mode>/<level>`` -> per-image Shapley values (M, C-1, 9), from the model's and the ablations' per-image
    values.

    ``v(S)`` (S = the intact kept skips) is ``model`` for S = all kept, else ``ablate/<mode>/<kept minus S>``. A
    Shapley value is a fixed linear combination of the ``v(S)``, so applied per image its mean over any set of images
    is the Shapley value of those images' means: bootstrapping the per-image values bootstraps the whole computation.
    """
    if not kept:
        return {}

    def value(intact: tuple[int, ...]) -> Tensor:
        ablated = tuple(level for level in kept if level not in intact)
        return per_image[sources.MODEL if not ablated else sources.ablation(mode, ablated)]

    return {sources.shapley(mode, level): phi for level, phi in shapley_values(kept, value).items()}


def summarize(rows: list[dict], depth: int) -> str:
    """A few lines for the console: model metrics, then probe vs floor hd95 per level."""
    table = {(row["source"], row["metric"], row["class"]): row["value"] for row in rows}
    lines = ["model (mean over classes): " + ", ".join(
        f"{m}={table[('model', m, 'mean')]:.3f}" for m in ("dice", "hd95", "assd", "nsd", "bf1", "biou")
    )]  # fmt: skip
    if (sources.floor(0), "hd95", "mean") in table:
        lines.append("hd95 by level (px):  level  probe/enc  probe/dec  floor")
        series = by_level(rows, depth)
        for level, (enc, dec, floor) in enumerate(zip(*series.values(), strict=True)):
            lines.append(f"{'':21s}{level:5d}  {enc:9.2f}  {dec:9.2f}  {floor:5.2f}")
    return "\n".join(lines)


def by_level(rows: list[dict], depth: int, metric: str = "hd95") -> dict[str, list[float]]:
    """The mean ``metric`` of the encoder probes, the decoder probes and the floors at levels 0..depth (NaN where a
    level has none): the console summary and the wandb line plot."""
    table = {row["source"]: row["value"] for row in rows if row["metric"] == metric and row["class"] == "mean"}
    levels = range(depth + 1)
    return {
        "probe enc": [table.get(sources.probe(f"enc{i}"), float("nan")) for i in levels],
        "probe dec": [table.get(sources.probe(f"dec{i}"), float("nan")) for i in levels],
        "floor": [table.get(sources.floor(i), float("nan")) for i in levels],
    }


def log_to_wandb(
    run: LoadedRun, columns: list[str], table_rows: list[list], rows: list[dict], per_image: dict[str, Tensor]
) -> None:
    """Log the results table, a probe/floor-by-level line plot and ``eval/overlays`` (the first 4 test images with
    the model's predicted and true masks, and their ``hd95`` and ``assd`` from ``per_image``, each the mean over the
    foreground classes as in the ``mean`` rows) when the run was trained with wandb."""
    with wandb_job(run.cfg, run.run_dir, "eval", OmegaConf.to_container(run.cfg, resolve=False)) as wandb_run:
        if wandb_run is None:
            return
        import wandb

        from unetlab.metrics.functional import METRIC_NAMES
        from unetlab.runs.wandb_masks import class_labels, mask_overlay, predict

        log = {"eval/results": wandb.Table(columns=columns, data=table_rows)}
        levels = list(range(run.net.depth + 1))
        series = by_level(rows, run.net.depth)
        log["eval/hd95_by_level"] = wandb.plot.line_series(
            xs=levels, ys=list(series.values()), keys=list(series), title="hd95 (px) by level", xname="level"
        )

        test = run.datamodule.datasets["test"]
        images, masks = zip(*(test[i] for i in range(min(4, len(test)))))
        predictions, num_classes = predict(run.net, images)
        labels = class_labels(num_classes, getattr(run.datamodule, "class_names", None), run.datamodule.ignore_index)
        hd95, assd = (per_image[sources.MODEL][:, :, METRIC_NAMES.index(name)].mean(dim=1) for name in ("hd95", "assd"))
        log["eval/overlays"] = wandb.Table(
            columns=["image", "overlay", "hd95", "assd"],
            data=[
                [i, mask_overlay(image, prediction, mask, labels, caption=f"test {i}"), hd95[i].item(), assd[i].item()]
                for i, (image, prediction, mask) in enumerate(zip(images, predictions, masks))
            ],
        )
        wandb_run.log(log)


def run_eval(
    ckpt: str | Path,
    eval_cfg: EvalOptions | DictConfig | dict,
    overrides: DictConfig | dict | None = None,
    cfg: DictConfig | None = None,
) -> list[dict]:
    """Load the run, evaluate, write ``results.csv`` and ``metrics.json`` in its run dir, log, print a summary.

    ``eval_cfg``: ``eval.*`` keys, any left out at their ``EvalOptions`` default; ``overrides``: run keys (``data``,
    ``model``, ...) merged into the run's saved config (``load_config``); ``cfg``: the run's config if already loaded.
    """
    if not isinstance(eval_cfg, EvalOptions):  # checked once: types by the merge, values by __post_init__
        eval_cfg = OmegaConf.to_object(OmegaConf.merge(EvalOptions, eval_cfg))
    options = eval_cfg
    run = load_run(ckpt, overrides, cfg=cfg)
    with hold_run_dir(run.run_dir):
        return _write_eval(run, options)


def _write_eval(run: LoadedRun, options: EvalOptions) -> list[dict]:
    labels = LabelMapRecorder(options.picture_images, run.datamodule.spacing)
    rows, per_image = evaluate(run, options, labels)
    results_path = run.run_dir / "results.csv"
    columns = run_columns(run.cfg, run.net, run.run_dir)
    # before results.csv, whose presence means "evaluated"
    write_per_image(run.run_dir / "per_image.npz", per_image)
    labels.write(run.run_dir / "label_maps.npz")
    write_results(results_path, columns, rows)

    metrics_path = run.run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics = {k: v for k, v in metrics.items() if not k.startswith("eval/")}
    metrics.update({f"eval/{r['source']}/{r['metric']}": r["value"] for r in rows if r["class"] == "mean"})
    write_json(metrics_path, metrics)

    table_rows = [[{**columns, **row}[c] for c in COLUMNS] for row in rows]
    log_to_wandb(run, COLUMNS, table_rows, rows, per_image)
    if options.progress:  # a console of its own; side by side (no bars), the one line below is enough
        print(summarize(rows, run.net.depth))
    print(f"[unetlab] wrote {results_path} ({len(rows)} rows)")
    return rows
