"""Synthetic results.csv files with known numbers, written through ``unetlab.evaluation.results.write_results``.

The grid: depth 1..3 with skips all and none, two seeds, and (optionally) the all-but-one skip sets at depth 3.
Each seed scales every value by ``1 + SEED_OFFSET[seed]``, so the mean over the two seeds is the base value and the
standard deviation over seeds is ``0.1 * sqrt(2) * value``.

- model hd95: no skips ``depth``; all skips ``0.5``; all-but-one at depth 3 ``DROP_ONE_HD95[dropped level]``
- assd = hd95 / 2, nsd = 1 - hd95 / 10, bf1 = 1 - hd95 / 8, dice = 0.95 - hd95 / 20, iou = dice - 0.05
- floor/<level> hd95 = 0.5 * level; probe/encL = floor + 0.1 + L; probe/decL = floor + 0.2 (all) or + 1 + L (none)
- shapley/mean/<level> (kept skips): hd95 -0.1 * (depth - level), dice +0.01 * (depth - level)
- ablate/mean/<level> (one kept skip ablated): hd95 = model + 0.1 * (depth - level)
"""

from __future__ import annotations

from pathlib import Path

from unetlab.evaluation.results import write_results

SEEDS = (0, 1)
SEED_OFFSET = {0: -0.1, 1: 0.1}
DEPTHS = (1, 2, 3)
DROP_ONE_HD95 = {0: 0.9, 1: 0.8, 2: 0.7}  # dropping the top skip (level 2) hurts least


def params(depth: int, kept: tuple[int, ...]) -> int:
    return 1000 * 4**depth + 100 * len(kept)


def model_hd95(depth: int, kept: tuple[int, ...], drop_one: dict[int, float]) -> float:
    if not kept:
        return float(depth)
    if len(kept) == depth:
        return 0.5
    (dropped,) = set(range(depth)) - set(kept)
    return drop_one[dropped]


def rows_for(depth: int, kept: tuple[int, ...], seed: int, drop_one: dict[int, float]) -> list[dict]:
    offset = SEED_OFFSET[seed]
    hd95 = model_hd95(depth, kept, drop_one)
    dice = 0.95 - hd95 / 20
    metrics = {
        "hd95": hd95, "assd": hd95 / 2, "nsd": 1 - hd95 / 10, "bf1": 1 - hd95 / 8, "dice": dice, "iou": dice - 0.05,
    }  # fmt: skip
    sources: dict[str, dict[str, float]] = {"model": metrics}
    for level in range(depth + 1):
        floor = 0.5 * level
        sources[f"floor/{level}"] = {"hd95": floor}
        sources[f"probe/enc{level}"] = {"hd95": floor + 0.1 + level}
        if level < depth:
            sources[f"probe/dec{level}"] = {"hd95": floor + (0.2 if kept else 1 + level)}
    for level in kept:
        sources[f"shapley/mean/{level}"] = {"hd95": -0.1 * (depth - level), "dice": 0.01 * (depth - level)}
        sources[f"ablate/mean/{level}"] = {"hd95": hd95 + 0.1 * (depth - level)}
    rows = []
    for source, values in sources.items():
        for metric, value in values.items():
            std = float("nan") if source.startswith("shapley/") else 0.05
            for class_ in ("1", "mean"):
                rows.append(
                    {"source": source, "metric": metric, "class": class_, "value": value * (1 + offset), "std": std,
                     "n": 16, "empty_rate": 0.0}
                )  # fmt: skip
    return rows


def write_grid(root: Path, drop_one: dict[int, float] | None = DROP_ONE_HD95) -> list[Path]:
    """One run folder per (depth, skips, seed) under ``root``, each with its results.csv; returns the files."""
    skip_sets = [(depth, kept) for depth in DEPTHS for kept in (tuple(range(depth)), ())]
    if drop_one:
        skip_sets += [(3, tuple(level for level in range(3) if level != dropped)) for dropped in range(3)]
    paths = []
    for depth, kept in skip_sets:
        skips = ",".join(map(str, kept)) or "none"
        for seed in SEEDS:
            run_dir = root / f"d{depth}_s{skips.replace(',', '')}_seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            run = {"run": f"{root.name}/{run_dir.name}", "dataset": "shapes", "image_size": 64, "depth": depth,
                   "skips": skips, "params": params(depth, kept), "seed": seed}  # fmt: skip
            path = run_dir / "results.csv"
            write_results(path, run, rows_for(depth, kept, seed, drop_one or {}))
            paths.append(path)
    return paths
