"""Synthetic runs with known numbers: per-image values first (``per_image.npz``), the ``results.csv`` rows derived
from them with ``source_rows`` as ``unetlab-eval`` does, so that the two agree.

The grid: depth 1..3 with skips all and none, two seeds; at depth 3 also the all-but-one and the single-skip sets.
Every per-image value of a source is its base value (hd95 in px, below) times ``1 + SEED_OFFSET[seed]`` times
``1 + IMAGE_SPREAD * z[m] + NOISE * e[m]``: ``z`` alternates +1, -1 (the same images are hard for every model),
``e`` is a zero-mean noise of the (model, source), the same on both seeds. Both average to 0 over the images, so a
run's mean is the base value times its seed factor, and the mean over the two seeds is the base value.

- model hd95: no skips ``none[depth]`` (default ``depth``); all skips 0.5; all-but-one at depth 3
  ``DROP_ONE_HD95[dropped level]``; single skip at depth 3 ``SINGLE_HD95[level]`` (level 2 alone has the mean of no
  skip at all: only the noise tells them apart)
- the other metrics are linear in hd95 (``INTERCEPT + SLOPE * hd95``): assd = hd95 / 2, dice = 0.95 - hd95 / 20, ...
- floor/<level> hd95 = 0.5 * level (one noise for every model: the floor depends on the ground truth only);
  probe/encL = floor + 0.1 + L; probe/decL = floor + 0.2 (all skips) or floor + 1 + L (otherwise)
- per mode of ``modes`` (default ``MODES``, written ``mean`` first), scaled by ``MODE_SCALE`` (lowpass:1 removes half
  as much; other modes 1):
  shapley/<mode>/<level> hd95 = -0.1 * (depth - level) * scale (other metrics ``SLOPE`` times it, no intercept);
  ablate/<mode>/<level> hd95 = model + 0.1 * (depth - level) * scale
- empty rate 0, unless ``empty`` maps (depth, kept, source) to a rate: the first ``round(rate * IMAGES)`` images are
  then empty (distances at the image diagonal, overlaps 0)
"""

from __future__ import annotations

import zlib
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from unetlab.bootstrap import resample_indices
from unetlab.evaluation.rows import source_rows
from unetlab.metrics.classes import COLUMNS
from unetlab.metrics.functional import DISTANCE_METRICS, METRIC_NAMES
from unetlab.report.intervals import one_thread
from unetlab.runs.results import write_per_image, write_results

SEEDS = (0, 1)
SEED_OFFSET = {0: -0.1, 1: 0.1, 2: 0.0}
DEPTHS = (1, 2, 3)
IMAGES = 16
IMAGE_SIZE = 64
DIAGONAL = IMAGE_SIZE * 2**0.5
IMAGE_SPREAD = 0.2
NOISE = 0.1
RESAMPLES = 1000
DROP_ONE_HD95 = {0: 0.9, 1: 0.8, 2: 0.7}  # dropping the top skip (level 2) hurts least
SINGLE_HD95 = {0: 1.5, 1: 2.0, 2: 3.0}  # at depth 3, where no skip gives 3.0
MODES = ("mean", "lowpass:1")
MODE_SCALE = {"mean": 1.0, "lowpass:1": 0.5}
SLOPE = {"dice": -1 / 20, "iou": -1 / 20, "hd": 1.5, "hd95": 1.0, "assd": 0.5, "nsd": -0.1, "bf1": -1 / 8,
         "biou": -1 / 8}  # fmt: skip
INTERCEPT = {"dice": 0.95, "iou": 0.9, "hd": 0.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0, "bf1": 1.0, "biou": 0.9}


def params(depth: int, kept: tuple[int, ...]) -> int:
    return 1000 * 4**depth + 100 * len(kept)


def model_hd95(depth: int, kept: tuple[int, ...], drop_one: dict, singles: dict, none: dict) -> float:
    if not kept:
        return float(none.get(depth, depth))
    if len(kept) == depth:
        return 0.5
    if len(kept) == 1:
        return singles[kept[0]]
    (dropped,) = set(range(depth)) - set(kept)
    return drop_one[dropped]


def base_hd95(depth: int, kept: tuple[int, ...], model: float, modes: tuple[str, ...] = MODES) -> dict[str, float]:
    """source -> the base hd95 of one model whose own hd95 is ``model`` (before the seed and image factors)."""
    sources = {"model": model}
    for level in range(depth + 1):
        floor = 0.5 * level
        sources[f"floor/{level}"] = floor
        sources[f"probe/enc{level}"] = floor + 0.1 + level
        if level < depth:
            sources[f"probe/dec{level}"] = floor + (0.2 if len(kept) == depth else 1 + level)
    for mode in modes:
        for level in kept:
            sources[f"ablate/{mode}/{level}"] = model + 0.1 * (depth - level) * MODE_SCALE.get(mode, 1.0)
    for mode in modes:
        for level in kept:
            sources[f"shapley/{mode}/{level}"] = -0.1 * (depth - level) * MODE_SCALE.get(mode, 1.0)
    return sources


def image_factors(key: str, noise: float = NOISE) -> Tensor:
    """(IMAGES,) ``1 + IMAGE_SPREAD * z + noise * e``, mean 1 (to rounding); ``e`` seeded by ``key``."""
    z = torch.tensor([1.0, -1.0]).repeat(IMAGES // 2).double()
    e = torch.randn(IMAGES, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())), dtype=torch.float64)
    return 1 + IMAGE_SPREAD * z + noise * (e - e.mean())


def metric_columns(hd95: Tensor, shapley: bool = False) -> Tensor:
    """(M,) hd95 -> (M, 1, 9): every metric from it, empty rate 0. Shapley values are differences: no intercept."""
    columns = [(0.0 if shapley else INTERCEPT[name]) + SLOPE[name] * hd95 for name in METRIC_NAMES]
    return torch.stack([*columns, torch.zeros_like(hd95)], dim=-1)[:, None, :]


def with_empty(values: Tensor, rate: float) -> Tensor:
    """The first ``round(rate * IMAGES)`` images empty: distances at the diagonal, overlaps 0, empty rate 1."""
    values = values.clone()
    count = round(rate * len(values))
    for column, name in enumerate(METRIC_NAMES):
        values[:count, :, column] = DIAGONAL if name in DISTANCE_METRICS else 0.0
    values[:count, :, COLUMNS.index("empty_rate")] = 1.0
    return values


def per_image_for(
    depth: int,
    kept: tuple[int, ...],
    seed: int,
    drop_one: dict | None = None,
    singles: dict | None = None,
    none: dict | None = None,
    empty: dict | None = None,
    modes: tuple[str, ...] = MODES,
) -> dict[str, Tensor]:
    """source -> (IMAGES, 1, 9) per-image values of one run (``drop_one``, ``singles``, ``none``: as in
    ``write_grid``, default the module's)."""
    drop_one = DROP_ONE_HD95 if drop_one is None else drop_one
    singles = SINGLE_HD95 if singles is None else singles
    model = model_hd95(depth, kept, drop_one, singles, none or {})
    rates = tuple(sorted((source, rate) for (d, k, source), rate in (empty or {}).items() if (d, k) == (depth, kept)))
    return run_values(depth, kept, seed, model, rates, modes)[0]


@cache
def run_values(
    depth: int,
    kept: tuple[int, ...],
    seed: int,
    model: float,
    rates: tuple[tuple[str, float], ...] = (),
    modes: tuple[str, ...] = MODES,
) -> tuple[dict[str, Tensor], list[dict]]:
    """The per-image values and the rows of one run, computed once per test session (``source_rows`` takes a while)."""
    out = {}
    for source, base in base_hd95(depth, kept, model, modes).items():
        key = source if source.startswith("floor/") else f"{depth}/{kept}/{source}"
        hd95 = base * (1 + SEED_OFFSET[seed]) * image_factors(key)
        values = metric_columns(hd95, shapley=source.startswith("shapley/"))
        rate = dict(rates).get(source, 0.0)
        out[source] = with_empty(values, rate) if rate else values
    return out, rows_from(out)


def rows_from(per_image: dict[str, Tensor]) -> list[dict]:
    """The rows of results.csv, as unetlab-eval derives them (one set of resamples for every source)."""
    indices = resample_indices(IMAGES, RESAMPLES, seed=0)
    rows = []
    with one_thread():  # tiny tensors: one thread is many times faster on a busy machine
        for source, values in per_image.items():
            rows += source_rows(source, values, indices, empty_rate=not source.startswith("shapley/"))
    return rows


def write_run(
    run_dir: Path,
    depth: int,
    kept: tuple[int, ...],
    seed: int,
    per_image: dict[str, Tensor],
    npz: bool = True,
    rows: list[dict] | None = None,
) -> Path:
    """One run folder: results.csv (``rows``, default derived from ``per_image``) and per_image.npz (unless ``npz``
    is False: an evaluation from before it was written)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    skips = ",".join(map(str, kept)) or "none"
    run = {"run": f"{run_dir.parent.name}/{run_dir.name}", "dataset": "shapes", "image_size": IMAGE_SIZE,
           "depth": depth, "skips": skips, "params": params(depth, kept), "seed": seed}  # fmt: skip
    if npz:
        write_per_image(run_dir / "per_image.npz", per_image)
    path = run_dir / "results.csv"
    write_results(path, run, rows_from(per_image) if rows is None else rows)
    return path


def run_name(depth: int, kept: tuple[int, ...], seed: int) -> str:
    return f"d{depth}_s{''.join(map(str, kept)) or 'none'}_seed{seed}"


def skip_sets(drop_one: dict | None, singles: dict | None) -> list[tuple[int, tuple[int, ...]]]:
    sets = [(depth, kept) for depth in DEPTHS for kept in (tuple(range(depth)), ())]
    deepest = max(DEPTHS)
    if drop_one:
        sets += [(deepest, tuple(level for level in range(deepest) if level != dropped)) for dropped in range(deepest)]
    if singles:
        sets += [(deepest, (level,)) for level in range(deepest)]
    return sets


def write_grid(
    root: Path,
    drop_one: dict | None = DROP_ONE_HD95,
    singles: dict | None = SINGLE_HD95,
    none: dict | None = None,
    seeds: tuple[int, ...] = SEEDS,
    empty: dict | None = None,
    npz: bool = True,
    modes: tuple[str, ...] = MODES,
) -> list[Path]:
    """One run folder per (depth, skips, seed) under ``root``, each with results.csv and per_image.npz; returns the
    results.csv files."""
    paths = []
    for depth, kept in skip_sets(drop_one, singles):
        for seed in seeds:
            model = model_hd95(depth, kept, drop_one or {}, singles or {}, none or {})
            rates = tuple(sorted((s, r) for (d, k, s), r in (empty or {}).items() if (d, k) == (depth, kept)))
            per_image, rows = run_values(depth, kept, seed, model, rates, modes)
            paths.append(write_run(root / run_name(depth, kept, seed), depth, kept, seed, per_image, npz, rows))
    return paths
