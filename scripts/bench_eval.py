"""Time of the whole evaluation (model, probes, floors, test-time ablations, Shapley) of one model.

Default: depth 4, base 32, 64 test images at 128x128, eval defaults (100 probe loss evaluations, `mean` ablations of
all 15 subsets of the 4 kept skips). The model is trained briefly first (``--train-steps``) so that its
predictions, and so the metric cost, look like a real model's; pass ``--ckpt`` to time a trained run.

    python scripts/bench_eval.py
Prints the phases and writes JSON (default bench_results/bench_eval.json).

Also measured (skip with --no-floors / --no-convergence):
- the resolution floor (uncached) of 128 shapes test images at 64x64 and 128x128, levels 0..4: seconds, hd95 with
  its bootstrap interval and empty rate per level, and hd95 again with the optimiser steps doubled;
- the probes' convergence: probe hd95 per key at --probe-steps and at twice as many, with the intervals;
- the bootstrap: seconds to turn every source's per-image values into rows with intervals.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch
from omegaconf import OmegaConf

from unetlab import UNet
from unetlab.bootstrap import resample_indices
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation import floors
from unetlab.evaluation.evaluate import EvalOptions, evaluate
from unetlab.evaluation.rows import source_rows
from unetlab.metrics import BoundaryMetrics
from unetlab.runs.checkpoint import LoadedRun, load_run
from unetlab.training.task import soft_dice_loss


def quick_trained_run(args) -> LoadedRun:
    """A depth/base/size model trained for ``args.train_steps`` steps, wrapped like a loaded run."""
    datamodule = ShapesDataModule(
        image_size=args.image_size, train_size=512, val_size=16, test_size=args.test_images, batch_size=16
    )
    datamodule.setup()
    torch.manual_seed(0)
    net = UNet(1, 2, depth=args.depth, base_channels=args.base_channels).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = partial(torch.nn.functional.cross_entropy, ignore_index=255)
    loader = datamodule.train_dataloader()
    step = 0
    while step < args.train_steps:
        for images, masks in loader:
            logits = net(images.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits, masks) + soft_dice_loss(logits, masks)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.train_steps:
                break
    cfg = OmegaConf.create({"seed": 0, "data": {"image_size": args.image_size}})
    return LoadedRun(cfg=cfg, net=net.eval(), datamodule=datamodule, run_dir=Path("."))


def hd95_row(per_image: torch.Tensor, indices: torch.Tensor) -> dict:
    """The hd95 (class mean) row of per-image values: value, interval, empty rate."""
    row = next(r for r in source_rows("x", per_image, indices) if (r["metric"], r["class"]) == ("hd95", "mean"))
    return {key: row[key] for key in ("value", "ci_low", "ci_high", "empty_rate")}


def bench_floors(images: int, sizes: tuple[int, ...] = (64, 128), levels: int = 5) -> dict:
    """Seconds and hd95 of the floors of ``images`` shapes test masks per size and level, at the default steps and
    at twice as many (how far the optimiser still is from its optimum)."""
    out = {}
    for size in sizes:
        masks = ShapesDataModule(image_size=size, train_size=1, val_size=1, test_size=images).build_split("test").masks
        indices = resample_indices(len(masks))
        for level in range(levels):
            per_level = {}
            for steps in (floors.FLOOR_STEPS, 2 * floors.FLOOR_STEPS):
                start = time.perf_counter()
                floor = floors.resolution_floor(masks, level, 2, steps=steps)
                seconds = time.perf_counter() - start
                metric = BoundaryMetrics(2)
                metric.update(floor, masks)
                per_level[f"steps{steps}"] = {"seconds": seconds, **hd95_row(metric.per_image_values(), indices)}
                if level == 0:
                    break
            out[f"{size}px/level{level}"] = per_level
            print(f"floor {size}px level {level}: " + "; ".join(
                f"{name} {r['seconds']:.1f} s hd95 {r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] "
                f"empty {r['empty_rate']:.3f}" for name, r in per_level.items()), flush=True)  # fmt: skip
    return out


def bench_convergence(run: LoadedRun, steps: int) -> dict:
    """Probe hd95 per key at ``steps`` and ``2 * steps``: converged probes move by less than their interval."""
    out = {}
    for name, probe_steps in (("steps", steps), ("doubled", 2 * steps)):
        rows, _ = evaluate(run, EvalOptions(floors=False, ablate_modes=[], probe_steps=probe_steps, progress=False))
        out[name] = {
            r["source"]: {key: r[key] for key in ("value", "ci_low", "ci_high")}
            for r in rows
            if r["source"].startswith("probe/") and (r["metric"], r["class"]) == ("hd95", "mean")
        }
    for key, row in out["steps"].items():
        moved = out["doubled"][key]["value"] - row["value"]
        width = row["ci_high"] - row["ci_low"]
        print(f"{key:12s} hd95 {row['value']:6.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] -> "
              f"{out['doubled'][key]['value']:6.2f} with {2 * steps} steps (moved {moved:+.2f}, interval width "
              f"{width:.2f})", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="time this trained run instead (its config's test split)")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--probe-steps", type=int, default=100)
    parser.add_argument("--floor-images", type=int, default=128)
    parser.add_argument("--no-floors", action="store_true", help="skip the floor timings")
    parser.add_argument("--no-convergence", action="store_true", help="skip the probe convergence check")
    parser.add_argument("--out", default="bench_results/bench_eval.json")
    args = parser.parse_args()
    floor_results = {} if args.no_floors else bench_floors(args.floor_images)

    start = time.perf_counter()
    run = load_run(args.ckpt) if args.ckpt else quick_trained_run(args)
    prepared = time.perf_counter() - start
    timings = {}
    for name, options in {
        "probes_only": EvalOptions(floors=False, ablate_modes=[], probe_steps=args.probe_steps, progress=False),
        "test_pass_only": EvalOptions(probes=False, progress=False),
        "whole_eval": EvalOptions(probe_steps=args.probe_steps, progress=False),
    }.items():
        start = time.perf_counter()
        rows, _ = evaluate(run, options)
        timings[name] = time.perf_counter() - start
        print(f"{name:15s} {timings[name]:7.2f} s  ({len(rows)} rows)", flush=True)
    _, per_image = evaluate(run, EvalOptions(probe_steps=args.probe_steps, progress=False))
    start = time.perf_counter()
    indices = resample_indices(len(per_image["model"]))
    rows = [row for source, values in per_image.items() for row in source_rows(source, values, indices)]
    timings["bootstrap_rows"] = time.perf_counter() - start
    print(f"bootstrap       {timings['bootstrap_rows']:7.2f} s  ({len(rows)} rows, {len(indices)} resamples)")
    convergence = {} if args.no_convergence else bench_convergence(run, args.probe_steps)
    result = {
        "config": vars(args),
        "floors": floor_results,
        "probe_convergence": convergence,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "prepare_s": prepared,
        "seconds": timings,
        "test_images": len(run.datamodule.datasets["test"]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
