"""Training throughput: a plain PyTorch loop vs the Lightning system, same model and data, in one run.

Also reports achieved conv GFLOP/s against ``torch.mm`` 4096x4096 fp32 on the same threads, and tries
``channels_last`` and ``bf16`` autocast, each with a short quality check (val Dice after the same steps).

    python scripts/bench_train.py                    # depth 4, base 32, 128x128, batch 16
    python scripts/bench_train.py --steps 10 --quick # smoke run
Prints a table and writes JSON (default bench_results/bench_train.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from unetlab import UNet
from unetlab.data.shapes import ShapesDataModule
from unetlab.system import SegmentationTask, soft_dice_loss


def conv_flops_per_image(net: nn.Module, image_size: int, in_channels: int) -> float:
    """Forward multiply-adds x2 of every Conv2d / ConvTranspose2d for one image."""
    total = 0.0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            h, w = inputs[0].shape[-2:]
        else:
            h, w = output.shape[-2:]
        total += 2.0 * module.in_channels * module.out_channels * k * h * w / module.groups

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, in_channels, image_size, image_size))
    for handle in handles:
        handle.remove()
    net.train()
    return total


def mm_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9


def batches(datamodule: ShapesDataModule, steps: int):
    loader = datamodule.train_dataloader()
    while True:
        for batch in loader:
            yield batch
            steps -= 1
            if steps == 0:
                return


def plain_loop(net, datamodule, steps, warmup, channels_last=False, bf16=False) -> float:
    """Images/s of a hand-written loop: forward, CE + soft Dice, backward, AdamW step."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    seen, start = 0, None
    for step, (images, masks) in enumerate(batches(datamodule, steps + warmup)):
        if step == warmup:
            start, seen = time.perf_counter(), 0
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(images)
            loss = F.cross_entropy(logits, masks, ignore_index=255) + soft_dice_loss(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(images)
    return seen / (time.perf_counter() - start)


class Throughput(L.Callback):
    """Images/s over the training batches after ``warmup``."""

    def __init__(self, warmup: int):
        self.warmup, self.seen, self.start = warmup, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.start, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += len(batch[0])
        self.end = time.perf_counter()

    @property
    def images_per_s(self) -> float:
        return self.seen / (self.end - self.start)


def lightning_loop(net, datamodule, steps, warmup, precision="32-true", channels_last=False) -> float:
    optimizer = partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-4)
    task = SegmentationTask(net, optimizer=optimizer, channels_last=channels_last)
    meter = Throughput(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + warmup,
        precision=precision,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    return meter.images_per_s


def val_dice(net, datamodule, channels_last=False, bf16=False) -> float:
    """Mean foreground Dice of the trained net on the val split (same for every variant)."""
    net.eval()
    inter = total = 0.0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for images, masks in datamodule.val_dataloader():
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            pred = net(images).argmax(1) == 1
            target = masks == 1
            inter += (pred & target).sum().item()
            total += pred.sum().item() + target.sum().item()
    return 2 * inter / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per loop (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quality-steps", type=int, default=300, help="steps of the quality check (0: skip)")
    parser.add_argument("--quality-size", type=int, default=64, help="image size of the quality check")
    parser.add_argument("--quality-base", type=int, default=8, help="base channels of the quality check")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--out", default="bench_results/bench_train.json")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.base_channels, args.steps, args.quality_steps = 64, 8, 5, 10

    datamodule = ShapesDataModule(
        image_size=args.image_size,
        train_size=max(256, args.batch_size * 8),
        val_size=64,
        test_size=16,
        batch_size=args.batch_size,
    )
    datamodule.setup("fit")

    def fresh_net():
        torch.manual_seed(0)
        return UNet(1, 2, depth=args.depth, base_channels=args.base_channels, skips="all")

    flops = conv_flops_per_image(fresh_net(), args.image_size, 1)
    peak = mm_gflops()
    results: dict = {
        "config": vars(args),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "forward_gflop_per_image": flops / 1e9,
        "mm4096_gflops": peak,
        "variants": {},
    }

    variants = {
        "plain": lambda: plain_loop(fresh_net(), datamodule, args.steps, args.warmup),
        "lightning": lambda: lightning_loop(fresh_net(), datamodule, args.steps, args.warmup),
        "lightning_channels_last": lambda: lightning_loop(
            fresh_net(), datamodule, args.steps, args.warmup, channels_last=True
        ),
        "plain_channels_last": lambda: plain_loop(fresh_net(), datamodule, args.steps, args.warmup, channels_last=True),
        "plain_bf16": lambda: plain_loop(fresh_net(), datamodule, args.steps, args.warmup, bf16=True),
        "lightning_bf16-mixed": lambda: lightning_loop(fresh_net(), datamodule, args.steps, args.warmup, "bf16-mixed"),
    }
    for name, run in variants.items():
        images_per_s = run()
        gflops = 3 * flops * images_per_s / 1e9  # training ~ forward + 2x backward
        results["variants"][name] = {
            "images_per_s": images_per_s,
            "conv_gflops": gflops,
            "fraction_of_mm": gflops / peak,
        }
        print(f"{name:24s} {images_per_s:8.1f} img/s  {gflops:7.1f} GFLOP/s  {gflops / peak:6.1%} of mm", flush=True)
    v = results["variants"]
    results["lightning_over_plain"] = v["lightning"]["images_per_s"] / v["plain"]["images_per_s"]
    print(f"lightning / plain = {results['lightning_over_plain']:.3f}   (mm 4096: {peak:.1f} GFLOP/s)")

    if args.quality_steps:
        # Same quality check for every variant, at the quick experiment's scale (64x64, base 8).
        small = ShapesDataModule(image_size=args.quality_size, train_size=1024, val_size=128, test_size=16)
        small.setup("fit")
        quality = {}
        for name, kwargs in {"fp32": {}, "channels_last": {"channels_last": True}, "bf16": {"bf16": True}}.items():
            torch.manual_seed(0)
            net = UNet(1, 2, depth=args.depth, base_channels=args.quality_base, skips="all")
            plain_loop(net, small, args.quality_steps, 0, **kwargs)
            quality[name] = val_dice(net, small, **kwargs)
            print(f"quality after {args.quality_steps} steps, {name:14s}: val dice {quality[name]:.4f}", flush=True)
        results["quality_val_dice"] = quality

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
