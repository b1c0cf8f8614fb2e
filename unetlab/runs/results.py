"""The results table (``docs/results-table.md``): one ``results.csv`` per run, one row per (source, metric, class),
and beside it ``per_image.npz``, the per-image values behind every row (the report bootstraps over seeds and images
from them).

Every row carries a 95 % percentile bootstrap interval of its value over the test images (``ci_low``, ``ci_high``),
from one set of resamples per run, so intervals of different sources are paired. Beside each distance metric ``m``
a row ``m_nonempty`` gives the distance over the images where prediction and ground truth are both non-empty: with
``empty_rate`` it tells objects missed (the diagonal-filled ``m`` grows, ``m_nonempty`` does not) from boundaries
misplaced (both grow).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from unetlab.atomic import replace_atomically, write_npz
from unetlab.conventions import skips_to_str
from unetlab.metrics.classes import COLUMNS as PER_IMAGE_COLUMNS
from unetlab.metrics.classes import OBJECT_COLUMNS

COLUMNS = [
    "run", "arch", "dataset", "image_size", "depth", "skips", "params", "seed",
    "source", "metric", "class", "value", "std", "n", "empty_rate", "ci_low", "ci_high", "unit",
]  # fmt: skip
NONEMPTY = "_nonempty"  # suffix of the distance rows over images where both masks are non-empty
EMPTY = PER_IMAGE_COLUMNS.index("empty_rate")


def dataset_name(cfg: DictConfig) -> str:
    """``unetlab.data.shapes.ShapesDataModule`` -> ``shapes``; shapes with a texture complexity name it,
    ``shapes-complexity0.5``, so that the report keeps each complexity apart (a setting of its own)."""
    name = cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    complexity = float(cfg.data.get("complexity", 0) or 0)
    return f"{name}-complexity{complexity:g}" if complexity else name


def arch_name(cfg: DictConfig) -> str:
    """The architecture of a run, from its model's ``_target_``: ``unet`` for ours (``unetlab.models.unet.UNet``), a
    library U-Net's factory name otherwise (``monai_dynunet``, ``smp_unet``, ...)."""
    name = str(cfg.model._target_).rsplit(".", 1)[-1]
    return "unet" if name == "UNet" else name


def image_size(cfg: DictConfig) -> str | int | None:
    """The data's ``image_size`` (a side in px), or a volume's ``volume_size`` as ``DxHxW`` (``16x48x48``)."""
    volume = cfg.data.get("volume_size")
    return "x".join(str(int(side)) for side in volume) if volume else cfg.data.get("image_size")


def run_columns(cfg: DictConfig, net: nn.Module, run_dir: Path) -> dict:
    """The columns that describe the run, the same on each of its rows."""
    return {
        "run": f"{run_dir.parent.name}/{run_dir.name}",
        "arch": arch_name(cfg),
        "dataset": dataset_name(cfg),
        "image_size": image_size(cfg),
        "depth": net.depth,
        "skips": skips_to_str(net.skip_levels),
        "params": sum(p.numel() for p in net.parameters()),
        "seed": cfg.seed,
    }


def write_results(path: Path, run: dict, rows: Iterable[dict]) -> None:
    """Write the table atomically (temp file + rename): a crash never leaves half a file. ``run``: the run's columns
    (``run_columns``); ``rows``: the other columns, keyed as in ``COLUMNS`` (source, metric, class, value, ...)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**run, **row})

    replace_atomically(path, write)


def write_per_image(path: Path, per_image: dict[str, Tensor]) -> None:
    """``per_image.npz``, atomically: a boundary source -> (M, C-1, 9) float32 per-image values (columns
    ``PER_IMAGE_COLUMNS``), a per-object source -> (M, C-1, 7) per-image sums (columns ``OBJECT_COLUMNS``)."""
    arrays = {source: values.float().numpy() for source, values in per_image.items()}
    arrays["columns"] = np.array(PER_IMAGE_COLUMNS)
    arrays["object_columns"] = np.array(OBJECT_COLUMNS)
    write_npz(path, arrays)


def read_per_image(path: Path) -> dict[str, Tensor]:
    """The inverse of ``write_per_image``: source -> (M, C-1, 9) or (M, C-1, 7) float64."""
    with np.load(path) as data:
        return {
            key: torch.from_numpy(data[key]).double() for key in data.files if key not in ("columns", "object_columns")
        }


def read_results(path: Path) -> list[dict]:
    """Rows of a results.csv, numbers as float (``n`` and ``depth`` as int)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("value", "std", "empty_rate", "ci_low", "ci_high"):
            row[key] = float(row[key]) if row.get(key, "") != "" else float("nan")
        row.setdefault("unit", "")
        row["arch"] = row.get("arch") or "unet"  # tables written before the column: our U-Net
        for key in ("n", "depth", "params", "seed"):
            row[key] = int(row[key])
    return rows
