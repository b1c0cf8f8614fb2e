"""``make_report(dirs, out_dir)``: every results.csv under ``dirs`` -> report.md, report.html, PNGs, report.csv."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path

from unetlab.report import plots, prediction_figures
from unetlab.report.answer import answer
from unetlab.report.architectures import compared_section
from unetlab.report.collect import ReportError, Results, collect
from unetlab.report.explorer import write_explorer
from unetlab.report.explorer_data import explorer_data
from unetlab.report.findings import findings
from unetlab.report.intervals import one_thread
from unetlab.report.learner import learner_part
from unetlab.report.published import published_findings
from unetlab.report.queries import ablation_modes
from unetlab.report.render import Document, Part, Section, to_html, to_markdown
from unetlab.report.tables import (
    BOUNDARY_METRICS,
    ablation_tables,
    layer_objects_table,
    metric_table,
    mode_sentences,
    objects_table,
    params_table,
    probe_table,
    shapley_tables,
    shift_table,
    susceptibility_table,
    tolerance_table,
)

AGGREGATE_COLUMNS = [
    "arch", "dataset", "image_size", "depth", "skips", "skip_set", "params", "source", "metric", "class", "mean", "std",
    "runs", "ci_low", "ci_high",
]  # fmt: skip


def make_report(
    dirs: Sequence[Path | str],
    out_dir: Path | str | None = None,
    log_wandb: bool = False,
    wandb_mode: str | None = None,
    project: str = "unetlab",
    group: str | None = None,
    pictures: Sequence[tuple[str, str, Path]] = (),
) -> Path:
    """Read every ``results.csv`` under ``dirs`` (recursively), average over seeds, write the report.

    Writes into ``out_dir`` (default: the first of ``dirs``): ``report.md`` (PNGs linked beside it),
    ``report.html`` (self-contained: PNGs inlined), ``report_*.png`` and ``report.csv`` (the seed-averaged table).
    With ``log_wandb`` the PNGs and the table go to one wandb run (``job_type="report"``, ``group`` default: the
    name of the first dir, ``wandb_mode`` default: ``$WANDB_MODE`` or offline). Returns the path of report.html.
    ``pictures``: extra (heading, text, PNG) figures, e.g. receptive fields and top-9 patches from
    ``unetlab-viz``, shown in a last section (``unetlab-ablate`` passes them).
    Raises ``ReportError`` (a ValueError) when no results.csv is found or one is not a results table.
    """
    with one_thread():
        return _make_report(dirs, out_dir, log_wandb, wandb_mode, project, group, pictures)


def _make_report(dirs, out_dir, log_wandb, wandb_mode, project, group, pictures) -> Path:
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise ReportError("no folders given: name at least one folder that holds runs with results.csv")
    results = collect(dirs)
    first = dirs[0] if dirs[0].is_dir() else dirs[0].parent
    out_dir = Path(out_dir) if out_dir is not None else first
    out_dir.mkdir(parents=True, exist_ok=True)

    settings = results.settings()
    pages = [explorer_page(setting, [*dirs, out_dir]) for setting in settings]  # None where no label maps
    sections = [
        build_section(setting, out_dir, prefix(setting, len(settings)), page)
        for setting, page in zip(settings, pages, strict=True)
    ]
    answers = [
        (setting, answer(setting, out_dir / f"{prefix(setting, len(settings))}answer.png")) for setting in settings
    ]
    answers = [(setting, found) for setting, found in answers if found is not None]
    by_data: dict[tuple, list[Results]] = {}
    for setting in settings:  # the architectures of one data set and image size, side by side
        by_data.setdefault(setting.models[0].setting[:2], []).append(setting)
    sections[:0] = [found for group in by_data.values() if (found := compared_section(group)) is not None]
    claims = published_findings(results)
    if claims:
        erf = plots.erf_vs_theoretical(results, out_dir / "report_erf_vs_theoretical.png")
        parts = [] if erf is None else [Part(
            "Effective against theoretical receptive field",
            "Every encoder key's ERF (the side of the square around the centre unit that holds 95 % of the gradient "
            "mass, measured on a canvas larger than the field) against its theoretical field, trained and at random "
            "init.", erf, [])]  # fmt: skip
        sections.insert(0, Section("Published findings", [claim.sentence() for claim in claims], parts))
    if pictures:
        parts = [Part(heading, text, Path(image), []) for heading, text, image in pictures]
        sections.append(Section("What the units see", None, parts))
    models = len(results.params)
    runs = sum(len(r) for r in results.runs.values())
    searched = ", ".join(f"`{d.resolve() if d.name in ('', '.', '..') else d}`" for d in dirs)
    intro = [
        f"{plural(len(results.files), 'results.csv file')} under {searched}: {plural(runs, 'run')} of "
        f"{plural(models, 'model')} "
        f"(a model is an architecture, a depth and a skip set; its runs differ by seed).",
        "Every number is the mean over a model's runs (seeds) followed by its 95 % interval in brackets, "
        "`0.53 [0.41, 0.66]`: a two-level bootstrap (1000 resamples, seeded) that resamples the runs with "
        "replacement and the test images with replacement, so it covers both the spread over seeds and over test "
        "images; with one run it is the bootstrap over the test images alone. Differences (gaps, changes, the "
        "comparisons in the findings) are paired: both numbers from the same resampled images and seeds. "
        "`report.csv` also gives the standard deviation over the runs. Metrics are scored on the test split and "
        f"averaged over the foreground classes; distances (hd95, assd, the gaps) are in {results.unit} "
        f"({'pixels' if results.unit == 'px' else 'the data set unit, from data.spacing'}), diagonal-filled where "
        "exactly one of prediction and ground truth is empty (the empty rate), and the non-empty columns give the "
        "distance over the images where both are present: a high distance with a low non-empty one means objects "
        "missed, both high means boundaries misplaced. A skip set is `all` (every level 0..depth-1), `none`, or the "
        "kept levels.",
    ]
    doc = Document(
        title="unetlab report: boundary localization vs depth and skip connections",
        intro=intro,
        sections=sections,
        sources=[display(path, out_dir) for path in results.files],
        notes=results.notes,
        answer=[
            (f"On {setting_title(setting)}: " if len(answers) > 1 else "") + " ".join(found.sentences)
            for setting, found in answers
        ],
        answer_image=next((found.image for _, found in answers if found.image is not None), None),
        base=out_dir,
    )
    explorer = next((write_explorer(page, out_dir / "explorer.html") for page in pages if page is not None), None)
    if explorer is not None:
        doc.intro.append(
            "[explorer.html](explorer.html), beside this report, shows the numbers as pictures: predictions of chosen "
            "test images by every model, the probe maps layer by layer against the floors, the receptive field of any "
            "unit, and the top-9 patches per unit (one self-contained page; open it in a browser)."
        )
    (out_dir / "report.md").write_text(to_markdown(doc))
    html_path = out_dir / "report.html"
    html_path.write_text(to_html(doc))
    rows = aggregate_rows(results)
    with open(out_dir / "report.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(AGGREGATE_COLUMNS)
        writer.writerows(rows)

    if log_wandb:
        images = {
            f"{slug(s) + '/' if len(sections) > 1 else ''}{part.image.stem.removeprefix('report_')}": part.image
            for s, section in zip(settings, sections, strict=False)
            for part in section.parts
            if part.image is not None
        }
        if doc.answer_image is not None:
            images["answer"] = doc.answer_image
        log_to_wandb(images, rows, out_dir, wandb_mode, project, group or first.resolve().name)
    return html_path


def explorer_page(results: Results, dirs: Sequence[Path]) -> dict | None:
    """The explorer's data of one setting (data set, image size), or None when its runs have no label maps."""
    model = results.models[0]
    return explorer_data(results, list(dirs), f"unetlab explorer: {model.dataset}, {model.shown_size}")


def build_section(results: Results, out_dir: Path, prefix: str, page: dict | None = None) -> Section:
    """Plots, tables and findings of one setting (data set, image size); ``page``: its explorer data, for the
    pictures of predictions and probe maps."""
    title = setting_title(results)

    def png(name: str) -> Path:
        return out_dir / f"{prefix}{name}.png"

    candidates = [
        (
            "Boundary error vs depth",
            "Boundary metrics of each trained model (source `model`) by depth, a line per skip set; `all` joins the "
            "all-skip models of every depth. A set trained at one depth only is a marker.",
            plots.boundary_vs_depth(results, png("boundary_vs_depth")),
            [metric_table(results, "Boundary metrics by depth and skip set", BOUNDARY_METRICS)],
        ),
        (
            "Predictions by depth",
            "The chosen test images (where the deepest no-skip model errs most, least, and a median case) as every "
            "model segments them: the predicted boundary coloured by its distance to the true one, the quantity "
            "behind hd95 and assd. explorer.html shows the same images interactively.",
            prediction_figures.predictions_figure(page, png("predictions")) if page else None,
            [],
        ),
        (
            "Probes vs the resolution floor",
            "hd95 of a linear (1x1) probe on each frozen feature map, upsampled from its level, against the "
            "resolution floor of that level (the ground truth down-sampled to the level and back). The gap "
            "probe − floor is what a linear read-out of the layer lacks beyond what its resolution alone explains. "
            "That is not always lost location: a shallow layer sits on a fine grid but sees only a few pixels, so its "
            "probe may not tell object from background at all (missing context); a deep layer sees whole objects "
            "through a coarse grid (lost location). The next figure tells the two apart.",
            plots.probes_vs_floor(results, png("probes_vs_floor")),
            [probe_table(results)],
        ),
        (
            "Found vs placed, layer by layer",
            "Each key's probe scored object by object: the share of ground-truth objects it finds (a predicted "
            "component overlapping the object with IoU ≥ 0.5) and the hd95 of the objects it finds, against the same "
            "two numbers for the floor of the key's level. A probe below the floor's share **misses** objects (the "
            "layer lacks the context to tell object from background); a probe that finds them but places them "
            "worse than the floor **misplaces** them (the layer's grid, or what it kept of it, is too coarse); a probe "
            "that predicts blobs touching no object **invents** them (the third panel: spurious blobs per image, "
            "false positives that neither of the first two counts).",
            plots.found_vs_placed(results, png("found_vs_placed")),
            [layer_objects_table(results)],
        ),
        (
            "Probe maps by layer",
            "One test image as each layer's probe reads it, for the deepest all-skip and no-skip models, under the "
            "floor of the layer's level: location blurs down the encoder and comes back in the decoder only where a "
            "skip brings it.",
            prediction_figures.probe_maps_figure(page, png("probe_maps")) if page else None,
            [],
        ),
        learner_part(results, png("fields_by_key")),  # "Why deep units see more and place worse"
        (
            "Detection by object size",
            "Every ground-truth object (a 4-connected component of a class) counts as detected when a predicted "
            "component overlaps it with IoU ≥ 0.5; objects are binned by equivalent diameter 2·sqrt(area/π). The "
            "floors apply the same test to the best map each level's resolution allows: the sizes a level loses "
            "there are lost to resolution alone; what a trained model loses beyond them it loses on its own. "
            "results.csv also has hd95 and assd over the detected objects of each bin.",
            plots.detection_vs_size(results, png("detection_by_size")),
            [objects_table(results)],
        ),
        (
            "Surface Dice over tolerances",
            "nsd is the fraction of both boundaries within τ of the other: at small τ it asks for the exact pixel, at "
            "large τ only for the right place. A model whose curve rises late places boundaries roughly but not "
            "exactly.",
            plots.nsd_vs_tolerance(results, png("nsd_vs_tolerance")),
            [tolerance_table(results)],
        ),
        (
            "Under test-time shift",
            "Each model scored again on the test images under each shift (the same scenes; only the images change: "
            "extra noise, lower contrast, blur or finer background texture), and how far each layer's activations "
            "move: the Hellinger distance between their in-domain and shifted distributions, averaged over channels "
            "(0: unchanged, 1: disjoint).",
            plots.susceptibility_by_key(results, png("susceptibility")),
            [shift_table(results), susceptibility_table(results)],
        ),
        (
            "Shapley value of each skip",
            "Exact Shapley attribution of the kept skips from test-time ablations: φ of a level is its average "
            "marginal effect on the metric; the values of a model sum to v(all kept) − v(none kept). "
            + mode_sentences(ablation_modes(results)),
            plots.shapley_bars(results, png("shapley")),
            shapley_tables(results),
        ),
        (
            "Test-time skip ablation",
            "The trained model scored with some of its kept skips ablated (the others intact), in each mode; change "
            "= ablated − intact, paired. " + mode_sentences(ablation_modes(results, prefix="ablate")),
            None,
            ablation_tables(results),
        ),
        (
            "Dice vs depth",
            "Region overlap of each trained model by depth, a line per skip set.",
            plots.dice_vs_depth(results, png("dice_vs_depth")),
            [metric_table(results, "Dice and IoU by depth and skip set", ("dice", "iou"))],
        ),
        (
            "Parameter count vs depth",
            "Trainable parameters; a removed skip removes its decoder block's skip input channels.",
            plots.params_vs_depth(results, png("params_vs_depth")),
            [params_table(results)],
        ),
    ]
    parts = []
    for heading, text, image, tables in candidates:
        tables = [table for table in tables if table is not None]
        if image is not None or tables:
            parts.append(Part(heading, text, image, tables))
    return Section(title, findings(results), parts)


def setting_title(results: Results) -> str:
    """``shapes, 64 px images``: the data set and image size of one setting (``, MONAI DynUNet`` for a library
    U-Net)."""
    model = results.models[0]
    arch = f", {model.net}" if model.arch != "unet" else ""
    return model.dataset + (f", {model.shown_size}" if model.shown_size else "") + arch


def aggregate_rows(results: Results) -> list[list]:
    """The seed-averaged table, one row per (model, source, metric, class)."""
    rows = []
    for (model, source, metric, class_), stat in sorted(results.stats.items(), key=lambda item: item[0]):
        rows.append([
            model.arch, model.dataset, model.image_size, model.depth, model.skips, model.skip_label,
            results.params[model], source, metric, class_, stat.mean, stat.std, stat.runs, stat.low, stat.high,
        ])  # fmt: skip
    return rows


def log_to_wandb(
    images: dict[str, Path], rows: list[list], out_dir: Path, mode: str | None, project: str, group: str
) -> None:
    """One wandb run (``job_type="report"``): the PNGs as images and the seed-averaged table."""
    import wandb

    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report/{group}",
        dir=str(out_dir),
        mode=mode or os.environ.get("WANDB_MODE", "offline"),
        reinit="finish_previous",
    )
    try:
        log = {f"report/{name}": wandb.Image(str(path)) for name, path in images.items()}
        log["report/table"] = wandb.Table(columns=AGGREGATE_COLUMNS, data=rows)
        run.log(log)
    finally:
        wandb.finish()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def prefix(results: Results, settings: int) -> str:
    """The file-name prefix of a setting's PNGs: ``report_``, or ``report_shapes64_`` where there are several."""
    return "report_" if settings == 1 else f"report_{slug(results)}_"


def slug(results: Results) -> str:
    """File-name part of a setting: ``shapes64``."""
    model = results.models[0]
    arch = model.arch if model.arch != "unet" else ""
    return re.sub(r"[^A-Za-z0-9]+", "", f"{model.dataset}{model.image_size}{arch}") or "results"


def display(path: Path, out_dir: Path) -> str:
    """A path relative to the report's folder where it lies below it, else absolute."""
    path, out_dir = Path(path).resolve(), Path(out_dir).resolve()
    return str(path.relative_to(out_dir)) if path.is_relative_to(out_dir) else str(path)
