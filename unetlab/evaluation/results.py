"""The results table (``docs/results-table.md``): one ``results.csv`` per run, one row per (source, metric, class)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig

from unetlab.conventions import skips_to_str
from unetlab.models.unet import UNet

COLUMNS = [
    "run", "dataset", "image_size", "depth", "skips", "params", "seed",
    "source", "metric", "class", "value", "std", "n", "empty_rate",
]  # fmt: skip


def dataset_name(cfg: DictConfig) -> str:
    """``unetlab.data.shapes.ShapesDataModule`` -> ``shapes``."""
    return cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule").lower()


def run_columns(cfg: DictConfig, net: UNet, run_dir: Path) -> dict:
    """The columns that describe the run, the same on each of its rows."""
    return {
        "run": f"{run_dir.parent.name}/{run_dir.name}",
        "dataset": dataset_name(cfg),
        "image_size": cfg.data.get("image_size"),
        "depth": net.depth,
        "skips": skips_to_str(net.skip_levels),
        "params": sum(p.numel() for p in net.parameters()),
        "seed": cfg.seed,
    }


def write_results(path: Path, run: dict, rows: Iterable[dict]) -> None:
    """Write the table atomically (temp file + rename): a crash never leaves half a file. ``run``: the run's columns
    (``run_columns``); ``rows``: the other columns, keyed as in ``COLUMNS`` (source, metric, class, value, ...)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**run, **row})
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict]:
    """Rows of a results.csv, numbers as float (``n`` and ``depth`` as int)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("value", "std", "empty_rate"):
            row[key] = float(row[key]) if row[key] != "" else float("nan")
        for key in ("n", "depth", "params", "seed"):
            row[key] = int(row[key])
    return rows
