"""Find every ``results.csv`` under some folders, check it, and average each number over the runs (seeds).

A *model* is one point of the grid: ``(dataset, image_size, depth, skips)``. Its runs (usually one per seed) are
averaged; ``std`` is the sample standard deviation over runs (NaN with a single run).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unetlab.conventions import skip_label, str_to_skips
from unetlab.evaluation.results import COLUMNS, read_results

RESULTS_NAME = "results.csv"


class ReportError(ValueError):
    """Bad report input: no results found, or a results.csv that is not a results table."""


@dataclass(frozen=True, order=True)
class Model:
    """One point of the grid; its runs differ only by seed."""

    dataset: str
    image_size: str
    depth: int
    skips: str  # canonical: "0,1,2" or "none"

    @property
    def setting(self) -> tuple[str, str]:
        """Models of one setting (same data, same image size) are compared in one section of the report."""
        return self.dataset, self.image_size

    @property
    def skip_label(self) -> str:
        return skip_label(self.kept, self.depth)

    @property
    def kept(self) -> tuple[int, ...]:
        return str_to_skips(self.skips)

    def __str__(self) -> str:
        return f"depth {self.depth}, skips {self.skip_label}"


@dataclass(frozen=True)
class Stat:
    """A number averaged over runs: ``mean``, sample ``std`` over runs (NaN for one run), ``runs`` counted."""

    mean: float
    std: float
    runs: int


@dataclass
class Results:
    """Seed-averaged results: ``stats[(model, source, metric, class)]``, parameter counts, and what was read."""

    stats: dict[tuple[Model, str, str, str], Stat]
    params: dict[Model, int]
    runs: dict[Model, list[str]]  # run names per model
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    empty_rate: dict[Model, float] = field(default_factory=dict)  # of the model's test predictions, over runs
    # (model, source) -> share of test images where exactly one mask was empty (hd95, class mean), over runs
    source_empty_rate: dict[tuple[Model, str], float] = field(default_factory=dict)

    def get(self, model: Model, source: str, metric: str, class_: str = "mean") -> Stat | None:
        return self.stats.get((model, source, metric, class_))

    def value(self, model: Model, source: str, metric: str, class_: str = "mean") -> float | None:
        """The mean, or None where the table has no such number (or only NaN)."""
        stat = self.get(model, source, metric, class_)
        return None if stat is None or math.isnan(stat.mean) else stat.mean

    @property
    def models(self) -> list[Model]:
        return sorted(self.params, key=lambda m: (m.setting, m.depth, skip_order(m.skip_label)))

    def settings(self) -> list[Results]:
        """One ``Results`` per (dataset, image_size), in order."""
        keys = sorted({model.setting for model in self.params})
        out = []
        for key in keys:
            out.append(
                Results(
                    stats={k: v for k, v in self.stats.items() if k[0].setting == key},
                    params={m: p for m, p in self.params.items() if m.setting == key},
                    runs={m: r for m, r in self.runs.items() if m.setting == key},
                    files=self.files,
                    notes=self.notes,
                    empty_rate={m: r for m, r in self.empty_rate.items() if m.setting == key},
                    source_empty_rate={k: r for k, r in self.source_empty_rate.items() if k[0].setting == key},
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


def aggregate(rows_by_file: Iterable[tuple[Path, list[dict]]]) -> Results:
    """Average every (model, source, metric, class) over the runs of that model."""
    values: dict[tuple[Model, str, str, str], list[float]] = defaultdict(list)
    params: dict[Model, list[int]] = defaultdict(list)
    runs: dict[Model, list[str]] = defaultdict(list)
    seeds: dict[Model, list[int]] = defaultdict(list)
    empty: dict[Model, list[float]] = defaultdict(list)
    source_empty: dict[tuple[Model, str], list[float]] = defaultdict(list)
    files = []
    for path, rows in rows_by_file:
        files.append(path)
        seen_models = set()
        for row in rows:
            model = Model(str(row["dataset"]), str(row["image_size"]), row["depth"], str(row["skips"]))
            values[(model, row["source"], row["metric"], str(row["class"]))].append(row["value"])
            if (row["metric"], str(row["class"])) == ("hd95", "mean"):
                source_empty[(model, row["source"])].append(row["empty_rate"])
                if row["source"] == "model":
                    empty[model].append(row["empty_rate"])
            if model not in seen_models:
                seen_models.add(model)
                params[model].append(row["params"])
                runs[model].append(row["run"])
                seeds[model].append(row["seed"])

    stats = {key: summarize(vals) for key, vals in values.items()}
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
    return Results(
        stats=stats,
        params={model: round(sum(p) / len(p)) for model, p in params.items()},
        runs=dict(runs),
        files=files,
        notes=notes,
        empty_rate={model: stat.mean for model, rates in empty.items() if (stat := summarize(rates)).runs},
        source_empty_rate={key: stat.mean for key, rates in source_empty.items() if (stat := summarize(rates)).runs},
    )


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
    """Find, read, check and aggregate every results.csv under ``dirs``."""
    return aggregate((path, load_rows(path)) for path in find_results(dirs))
