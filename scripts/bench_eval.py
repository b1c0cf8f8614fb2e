"""Time of the whole evaluation (model, probes, floors, test-time ablations, Shapley) of one model.

Default: depth 4, base 32, 64 test images at 128x128, eval defaults (200 probe steps, `mean` ablations of
all 15 subsets of the 4 kept skips). The model is trained briefly first (``--train-steps``) so that its
predictions, and so the metric cost, look like a real model's; pass ``--ckpt`` to time a trained run.

    python scripts/bench_eval.py
Prints the phases and writes JSON (default bench_results/bench_eval.json).
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
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import EvalOptions, evaluate
from unetlab.training.checkpoint import LoadedRun, load_run
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="time this trained run instead (its config's test split)")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=40)
    parser.add_argument("--probe-steps", type=int, default=200)
    parser.add_argument("--out", default="bench_results/bench_eval.json")
    args = parser.parse_args()

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
    result = {
        "config": vars(args),
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
