"""Find every ``results.csv`` under some folders, check it, and average each number over the runs (seeds).

A *model* is one point of the grid: ``(dataset, image_size, depth, skips)``. Its runs (usually one per seed) are
averaged; ``std`` is the sample standard deviation over runs (NaN with a single run); ``low``, ``high`` the 95 %
interval over seeds and test images, a two-level bootstrap of the ``per_image.npz`` beside each results.csv
(``unetlab/report/intervals.py``), per-object numbers included, so every comparison is paired. A run without usable
per-image values is refused, naming it. Only the whole-split statistics (the domain susceptibility, the effective
receptive fields) and the tolerance sweep keep their rows' own intervals, averaged over the runs.
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from unetlab import sources
from unetlab.conventions import skip_label, str_to_skips
from unetlab.report.intervals import Diff, Draws, Samples, model_intervals, paired_contrast
from unetlab.runs.results import COLUMNS, read_per_image, read_results

RESULTS_NAME = "results.csv"
PER_IMAGE_NAME = "per_image.npz"
EMPTY_RATE = "empty_rate"  # the empty rate of a (source, class), kept in ``stats`` as if it were a metric
OBJECT_COUNT = "objects"  # the ground-truth objects of a per-object row (its n), kept in ``stats`` the same way


class ReportError(ValueError):
    """Bad report input: no results found, or a results.csv that is not a results table."""


# Library U-Nets whose skips start at level 1 (their first layer already halves the image): "all" is 1..depth-1.
NO_FULL_RESOLUTION_SKIP = {"monai_unet", "smp_unet"}
# The architectures' names in sentences and titles (results.csv's arch column -> words).
ARCH_TITLES = {
    "unet": "U-Net",
    "monai_basic_unet": "MONAI BasicUNet",
    "monai_unet": "MONAI UNet",
    "monai_dynunet": "MONAI DynUNet",
    "monai_attentionunet": "MONAI AttentionUnet",
    "nnunet_plainconv": "nnU-Net PlainConvUNet",
    "nnunet_resenc": "nnU-Net ResidualEncoderUNet",
    "smp_unet": "smp Unet",
}


@dataclass(frozen=True, order=True)
class Model:
    """One point of the grid; its runs differ only by seed."""

    dataset: str
    image_size: str
    depth: int
    skips: str  # canonical: "0,1,2" or "none"
    arch: str = "unet"  # the architecture (results.csv's arch column): ours, or a library U-Net's factory name

    @property
    def shown_size(self) -> str:
        """``64 px images``, or ``16x48x48-voxel volumes`` for a volume's ``DxHxW``; empty when unknown."""
        if not self.image_size:
            return ""
        return f"{self.image_size}-voxel volumes" if "x" in str(self.image_size) else f"{self.image_size} px images"

    @property
    def setting(self) -> tuple[str, str, str]:
        """Models of one setting (same data, same image size, same architecture) are compared in one section of the
        report; the architectures of one data set are compared with each other in a section of their own."""
        return self.dataset, self.image_size, self.arch

    @property
    def net(self) -> str:
        """``U-Net``, ``MONAI DynUNet``, ...: the architecture in a sentence."""
        return ARCH_TITLES.get(self.arch, self.arch)

    @property
    def skip_label(self) -> str:
        if self.arch in NO_FULL_RESOLUTION_SKIP and self.kept == tuple(range(1, self.depth)):
            return "all"  # every skip the architecture has
        return skip_label(self.kept, self.depth)

    @property
    def kept(self) -> tuple[int, ...]:
        return str_to_skips(self.skips)

    def __str__(self) -> str:
        """``depth 3, skips all``, ``depth 3, skips 0,2``: the model in a note or an error message."""
        return f"depth {self.depth}, skips {self.skip_label}"

    @property
    def described(self) -> str:
        """``the depth-3 all-skip U-Net``, ``the depth-3 U-Net with skips 0,2``: the model in a sentence."""
        if self.skip_label == "all":
            return f"the depth-{self.depth} all-skip {self.net}"
        if self.skip_label == "none":
            return f"the depth-{self.depth} no-skip {self.net}"
        return f"the depth-{self.depth} {self.net} with skips {self.skips}"

    @property
    def legend(self) -> str:
        """``depth 3, all skips``, ``depth 3, skips {0,2}``: the model in a figure's legend or panel title."""
        return f"depth {self.depth}, {skip_set_name(self.skip_label)}"


@dataclass(frozen=True)
class Stat:
    """A number averaged over runs: ``mean``, sample ``std`` over runs (NaN for one run), ``runs`` counted, and the
    95 % interval ``low``, ``high`` (NaN where there is none)."""

    mean: float
    std: float
    runs: int
    low: float = float("nan")
    high: float = float("nan")


@dataclass
class Results:
    """Seed-averaged results: ``stats[(model, source, metric, class)]``, parameter counts, and what was read."""

    stats: dict[tuple[Model, str, str, str], Stat]
    params: dict[Model, int]
    runs: dict[Model, list[str]]  # run names per model
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    samples: dict[Model, Samples] = field(default_factory=dict)  # per-image values, where every run has them
    draws: Draws = field(default_factory=Draws)
    units: dict[tuple[str, str], str] = field(default_factory=dict)  # per setting: the unit of its distances

    @property
    def unit(self) -> str:
        """The unit of the distances (``px``, or the data's unit such as ``um``); one per setting."""
        return next(iter(set(self.units.values())), "px") if len(set(self.units.values())) <= 1 else "mixed units"

    def get(self, model: Model, source: str, metric: str, class_: str = "mean") -> Stat | None:
        return self.stats.get((model, source, metric, class_))

    def value(self, model: Model, source: str, metric: str, class_: str = "mean") -> float | None:
        """The mean, or None where the table has no such number (or only NaN)."""
        stat = self.get(model, source, metric, class_)
        return None if stat is None or math.isnan(stat.mean) else stat.mean

    def compare(
        self, terms: Sequence[tuple[float, Model, str]], metric: str = "hd95", class_: str = "mean"
    ) -> Diff | None:
        """``sum(weight * mean of (model, source))`` as a ``Diff`` with its paired two-level interval, e.g.
        ``[(1, a, "model"), (-1, b, "model")]`` for a minus b; None where a term has no number.

        For a number that no per-image values give (the domain susceptibility, a tolerance row) the value comes
        without a paired interval, and two such numbers differ significantly only where their own intervals do not
        overlap."""
        stats = [self.get(model, source, metric, class_) for _, model, source in terms]
        if not terms or any(stat is None or math.isnan(stat.mean) for stat in stats):
            return None
        if all(model in self.samples for _, model, _ in terms):
            samples = [(weight, self.samples[model], source) for weight, model, source in terms]
            diff = paired_contrast(samples, metric, class_, self.draws)
            if diff is not None:
                return diff
        # A number that no per-image values give (a whole-split statistic, a tolerance row): the rows' intervals.
        value = sum(weight * stat.mean for (weight, _, _), stat in zip(terms, stats, strict=True))
        if len(terms) == 1:  # one number: its own interval, scaled
            weight, (stat,) = terms[0][0], stats
            low, high = sorted((weight * stat.low, weight * stat.high))
            return replace(Diff.from_interval(value, low, high), paired=False)
        apart = False
        if len(terms) == 2 and terms[0][0] * terms[1][0] < 0:
            a, b = stats
            apart = a.high < b.low or b.high < a.low  # False with NaN bounds
        return Diff(value, float("nan"), float("nan"), apart, paired=False)

    def difference(
        self, a: tuple[Model, str], b: tuple[Model, str], metric: str = "hd95", class_: str = "mean"
    ) -> Diff | None:
        """(model, source) a minus b, paired (``compare``)."""
        return self.compare([(1.0, *a), (-1.0, *b)], metric, class_)

    @property
    def models(self) -> list[Model]:
        return sorted(self.params, key=lambda m: (m.setting, m.depth, skip_order(m.skip_label)))

    def settings(self) -> list[Results]:
        """One ``Results`` per (dataset, image_size), in order."""
        keys = sorted({model.setting for model in self.params}, key=lambda key: (key[:2], key[2] != "unet", key[2]))
        out = []
        for key in keys:
            out.append(
                Results(
                    stats={k: v for k, v in self.stats.items() if k[0].setting == key},
                    params={m: p for m, p in self.params.items() if m.setting == key},
                    runs={m: r for m, r in self.runs.items() if m.setting == key},
                    files=self.files,
                    notes=self.notes,
                    samples={m: s for m, s in self.samples.items() if m.setting == key},
                    draws=self.draws,
                    units={key: self.units[key]} if key in self.units else {},
                )
            )
        return out


def skip_order(label: str) -> tuple:
    """Legend and table order: all, none, then the other sets by size and levels."""
    if label == "all":
        return (0,)
    if label == "none":
        return (1,)
    levels = str_to_skips(label)
    return (2, -len(levels), levels)


def skip_set_name(label: str) -> str:
    """``all skips``, ``no skips``, ``skips {0,2}``: a skip set (a ``skip_label``) in a legend or a column name."""
    return {"all": "all skips", "none": "no skips"}.get(label, f"skips {{{label}}}")


def find_results(dirs: Sequence[Path]) -> list[Path]:
    """Every ``results.csv`` under ``dirs`` (recursively), each file once, sorted."""
    found: dict[Path, None] = {}
    for folder in dirs:
        folder = Path(folder)
        if folder.is_file() and folder.name == RESULTS_NAME:
            found[folder.resolve()] = None
        elif folder.is_dir():
            for path in sorted(folder.rglob(RESULTS_NAME)):
                if path.is_file():
                    found[path.resolve()] = None
        elif not folder.exists():
            raise ReportError(f"report.dirs: {folder} does not exist (give folders that hold runs with results.csv)")
        else:
            raise ReportError(f"report.dirs: {folder} is not a folder (give folders that hold runs with results.csv)")
    if not found:
        searched = ", ".join(str(Path(d)) for d in dirs) or "(none given)"
        raise ReportError(f"no {RESULTS_NAME} found under {searched} (searched recursively; run unetlab-eval first)")
    return sorted(found)


def load_rows(path: Path) -> list[dict]:
    """The rows of one results.csv; a clear error naming the file if it is not a results table."""
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise ReportError(f"{path}: empty file, expected a header with columns {', '.join(COLUMNS)}")
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ReportError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(a results.csv has columns {', '.join(COLUMNS)})"
        )
    try:
        return read_results(path)
    except (ValueError, TypeError) as err:
        raise ReportError(f"{path}: unreadable row: {err}") from None


def load_per_image(path: Path, rows: list[dict]) -> tuple[dict[str, Tensor] | None, str | None]:
    """The ``per_image.npz`` beside a results.csv, checked against its rows, or (None, why not)."""
    npz = path.with_name(PER_IMAGE_NAME)
    if not npz.is_file():
        return None, f"no {PER_IMAGE_NAME}"
    try:
        per_image = read_per_image(npz)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        return None, f"unreadable {PER_IMAGE_NAME} ({err})"
    images = {row["n"] for row in rows if row["source"] == "model"}
    missing = sorted({row["source"] for row in rows if sources.in_per_image(row["source"])} - set(per_image))
    if missing and all(sources.is_objects(source) for source in missing):
        return None, f"it has no per-object sums ({len(missing)} per-object sources; evaluated by an older unetlab)"
    if missing or any(values.ndim != 3 or len(values) not in images for values in per_image.values()):
        return None, "it does not match results.csv (its sources or its number of images)"
    return per_image, None


def aggregate(rows_by_file: Iterable[tuple[Path, list[dict]] | tuple[Path, list[dict], dict | None]]) -> Results:
    """Average every (model, source, metric, class) over the runs of that model; intervals from the per-image values
    (a third element of each item, from ``load_per_image``) where every run of a model has them."""
    values: dict[tuple[Model, str, str, str], list[float]] = defaultdict(list)
    row_intervals: dict[tuple[Model, str, str, str], list[tuple[float, float]]] = defaultdict(list)
    params: dict[Model, list[int]] = defaultdict(list)
    runs: dict[Model, list[str]] = defaultdict(list)
    seeds: dict[Model, list[int]] = defaultdict(list)
    per_image: dict[Model, list[dict | None]] = defaultdict(list)
    files = []
    units: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in rows_by_file:
        path, rows = item[0], item[1]
        files.append(path)
        seen_models = set()
        for row in rows:
            model = Model(str(row["dataset"]), str(row["image_size"]), row["depth"], str(row["skips"]), row["arch"])
            if row.get("unit"):
                units[model.setting].add(row["unit"])
            key = (model, row["source"], row["metric"], str(row["class"]))
            values[key].append(row["value"])
            row_intervals[key].append((row["ci_low"], row["ci_high"]))
            if row["metric"] == "detected":  # a per-object row: n counts the ground-truth objects of its bin
                count_key = (model, row["source"], OBJECT_COUNT, str(row["class"]))
                values[count_key].append(float(row["n"]))
                row_intervals[count_key].append((float("nan"), float("nan")))
            if row["metric"] == "hd95":  # the empty rate is the same on every metric's row of a (source, class)
                empty_key = (model, row["source"], EMPTY_RATE, str(row["class"]))
                values[empty_key].append(row["empty_rate"])
                row_intervals[empty_key].append((float("nan"), float("nan")))
            if model not in seen_models:
                seen_models.add(model)
                params[model].append(row["params"])
                runs[model].append(row["run"])
                seeds[model].append(row["seed"])
                per_image[model].append(item[2] if len(item) > 2 else None)

    stats = {key: summarize(vals) for key, vals in values.items()}
    stats = {key: stat for key, stat in stats.items() if stat.runs}  # the NaN empty rate of Shapley rows, etc.
    notes = []
    for model, model_seeds in sorted(seeds.items()):
        repeated = sorted({seed for seed in model_seeds if model_seeds.count(seed) > 1})
        if repeated:
            notes.append(
                f"{model} ({model.dataset}): {len(model_seeds)} runs, seed {', '.join(map(str, repeated))} more than "
                "once; they are averaged as if independent (runs that differ in a setting the table does not "
                "record, e.g. base_channels, land in one model)"
            )
        if len(set(params[model])) > 1:
            notes.append(f"{model} ({model.dataset}): runs differ in parameter count {sorted(set(params[model]))}")

    samples = {}
    for model, arrays in per_image.items():
        if any(a is None for a in arrays):  # collect() refuses such runs; aggregate() called directly skips the model
            continue
        if len({len(next(iter(a.values()))) for a in arrays}) != 1:
            raise ReportError(f"{model} ({model.dataset}): its runs {', '.join(runs[model])} were scored on different "
                              "numbers of test images; evaluate them on the same test split")  # fmt: skip
        names = sorted(set.intersection(*(set(a) for a in arrays)))
        stacked = {s: torch.stack([a[s] for a in arrays]) for s in names}
        samples[model] = Samples(
            tuple(seeds[model]),
            {s: v for s, v in stacked.items() if not sources.is_objects(s)},
            {s: v for s, v in stacked.items() if sources.is_objects(s)},
        )
    draws = Draws()
    bootstrapped = set()
    for model, model_samples in samples.items():
        for (source, metric, class_), (low, high) in model_intervals(model_samples, draws).items():
            key = (model, source, metric, class_)
            if key in stats:
                stats[key] = replace(stats[key], low=low, high=high)
                bootstrapped.add(key)
    # The rest: the rows' own intervals (the rows that per_image.npz lacks: nsd@τ, bf1@τ, the domain susceptibility,
    # the effective receptive fields)
    for key, bounds in row_intervals.items():
        if key in stats and key not in bootstrapped:
            low, high = (summarize(side).mean for side in zip(*bounds, strict=True))
            stats[key] = replace(stats[key], low=low, high=high)
    mixed = {setting: found for setting, found in units.items() if len(found) > 1}
    if mixed:
        setting, found = next(iter(mixed.items()))
        raise ReportError(
            f"the runs of {setting[0]} at {setting[1]} px measure distances in different units "
            f"({', '.join(sorted(found))}): one report averages numbers of one unit; report those runs separately"
        )
    notes += seed_set_notes(seeds)
    return Results(
        stats=stats,
        params={model: round(sum(p) / len(p)) for model, p in params.items()},
        runs=dict(runs),
        files=files,
        notes=notes,
        samples=samples,
        draws=draws,
        units={setting: next(iter(found)) for setting, found in units.items()},
    )


def seed_set_notes(seeds: dict[Model, list[int]]) -> list[str]:
    """Models of one setting trained with different seeds: their comparisons use the seeds they share."""
    notes = []
    for setting in sorted({model.setting for model in seeds}):
        sets = {tuple(sorted(set(s))) for m, s in seeds.items() if m.setting == setting}
        if len(sets) > 1:
            shown = ", ".join("{" + ", ".join(map(str, s)) + "}" for s in sorted(sets))
            notes.append(
                f"{setting[0]}{f', {setting[1]} px' if setting[1] else ''}: the models have different seed sets "
                f"({shown}); a comparison of two models resamples the seeds both have (the other runs left out), "
                "or, with no seed in common, each model's seeds on their own."
            )
    return notes


def summarize(values: Sequence[float]) -> Stat:
    """Mean and sample std over runs, NaN values left out."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Stat(float("nan"), float("nan"), 0)
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return Stat(mean, float("nan"), len(finite))
    variance = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return Stat(mean, math.sqrt(variance), len(finite))


def collect(dirs: Sequence[Path]) -> Results:
    """Find, read, check and aggregate every results.csv under ``dirs`` (with the per_image.npz beside each)."""

    def read(path: Path) -> tuple[Path, list[dict], dict]:
        rows = load_rows(path)
        per_image, why = load_per_image(path, rows)
        if per_image is None:
            raise ReportError(
                f"{path.with_name(PER_IMAGE_NAME)}: {why}. The report pairs every comparison on the runs' per-image "
                f"values; evaluate the run again: unetlab-eval ckpt={path.parent}/checkpoints/<best or last>.ckpt"
            )
        return path, rows, per_image

    return aggregate(read(path) for path in find_results(dirs))
