"""Training throughput: a plain PyTorch loop vs the Lightning system, same model and data, in one run.

Also reports achieved conv GFLOP/s against ``torch.mm`` 4096x4096 fp32 on the same threads, and tries
``channels_last`` and ``bf16`` autocast, each with a short quality check (val Dice after the same steps).

    python scripts/bench_train.py                    # depth 4, base 32, 128x128, batch 16
    python scripts/bench_train.py --steps 10 --quick # smoke run
    python scripts/bench_train.py --devices 2        # + DDP scaling: N processes (ddp_spawn, gloo) vs 1 on CPU
On a CUDA machine it also measures the Lightning system on 1 GPU (or ``--devices N`` GPUs) at ``--gpu-image-size``
(256) with fp32 and bf16-mixed, and the boundary metrics on GPU tensors (ms per 256x256 pair, all eight metrics).
Prints a table and writes JSON (default bench_results/bench_train.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from unetlab import UNet
from unetlab.data.shapes import ShapesDataModule
from unetlab.metrics import functional as metrics_functional
from unetlab.training.task import SegmentationTask, soft_dice_loss


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
    """Images/s over the training batches after ``warmup``, summed over the processes.

    Every process sees its own batches; rank 0 scales its own rate by the world size (the ranks step in lockstep,
    batches of one size) and writes it to ``out``, because ``ddp_spawn`` returns no callback state to the caller.
    """

    def __init__(self, warmup: int, out: Path):
        self.warmup, self.seen, self.start, self.out = warmup, 0, None, out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.start, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # kernels run asynchronously: time the finished step
        self.seen += len(batch[0])
        self.end = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.out.write_text(json.dumps(trainer.world_size * self.seen / (self.end - self.start)))


def lightning_loop(
    net, datamodule, steps, warmup, precision="32-true", channels_last=False, accelerator="cpu", devices=1,
    threads_per_process=None,
) -> float:  # fmt: skip
    """Images/s of the Lightning system (all processes together); ``devices > 1`` runs ``ddp_spawn``."""
    optimizer = partial(torch.optim.AdamW, lr=3e-3, weight_decay=1e-4)
    task = SegmentationTask(net, optimizer=optimizer, channels_last=channels_last)
    threads = torch.get_num_threads()
    if threads_per_process:
        torch.set_num_threads(threads_per_process)  # spawned processes start with the parent's setting
    with tempfile.TemporaryDirectory() as tmp:
        meter = Throughput(warmup, Path(tmp) / "images_per_s.json")
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy="ddp_spawn" if devices > 1 else "auto",
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
        images_per_s = json.loads(meter.out.read_text())
    torch.set_num_threads(threads)
    return images_per_s


def ddp_scaling(args, fresh_net, datamodule) -> dict:
    """CPU: ``--devices`` processes (ddp_spawn, gloo), each with its share of the threads, vs one process."""
    threads = torch.get_num_threads()
    per_process = max(1, threads // args.devices)
    one = lightning_loop(fresh_net(), datamodule, args.steps, args.warmup, channels_last=True)
    many = lightning_loop(
        fresh_net(), datamodule, args.steps, args.warmup, channels_last=True, devices=args.devices,
        threads_per_process=per_process,
    )  # fmt: skip
    result = {
        "processes": args.devices,
        "threads_per_process": per_process,
        "one_process_images_per_s": one,
        "ddp_images_per_s": many,
        "scaling": many / one,
        "note": f"per-process batch {args.batch_size}: the DDP run trains on {args.devices}x the batch per step",
    }
    print(f"DDP on CPU: {args.devices} processes x {per_process} threads {many:.1f} img/s vs 1 process x {threads} "
          f"threads {one:.1f} img/s: scaling {many / one:.2f}x", flush=True)  # fmt: skip
    return result


def gpu_section(args, fresh_net) -> dict:
    """CUDA: the Lightning system at ``--gpu-image-size`` with fp32 and bf16-mixed; metrics on GPU tensors."""
    size = args.gpu_image_size
    datamodule = ShapesDataModule(
        image_size=size, train_size=args.batch_size * 16, val_size=16, test_size=16, batch_size=args.batch_size,
        num_workers=4, pin_memory=True,
    )  # fmt: skip
    datamodule.setup("fit")
    flops = conv_flops_per_image(fresh_net(), size, 1)
    result: dict = {"image_size": size, "devices": args.devices, "gpu": torch.cuda.get_device_name(), "variants": {}}
    for precision in ("32-true", "bf16-mixed"):
        for channels_last in (False, True):
            name = f"{precision}{'_channels_last' if channels_last else ''}"
            images_per_s = lightning_loop(
                fresh_net(), datamodule, max(args.steps, 50), max(args.warmup, 10), precision=precision,
                channels_last=channels_last, accelerator="gpu", devices=args.devices,
            )  # fmt: skip
            tflops = 3 * flops * images_per_s / 1e12
            result["variants"][name] = {"images_per_s": images_per_s, "conv_tflops": tflops}
            print(f"GPU {name:28s} {images_per_s:9.1f} img/s  {tflops:6.1f} TFLOP/s ({size}x{size})", flush=True)

    # Metrics on the GPU: predicted masks straight from the network's device, no copy to the CPU.
    datamodule_masks = ShapesDataModule(image_size=256, train_size=1, val_size=1, test_size=64)
    datamodule_masks.setup("test")
    target = torch.stack([datamodule_masks.datasets["test"][i][1] for i in range(64)]).cuda() == 1
    pred = torch.roll(target, shifts=(2, -1), dims=(1, 2))  # a shifted prediction: every distance non-zero
    metrics_functional.boundary_metrics(pred, target)
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        metrics_functional.boundary_metrics(pred, target)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    ms_per_pair = 1e3 * sorted(times)[2] / len(target)
    result["metrics_ms_per_256_pair"] = ms_per_pair
    print(f"GPU boundary_metrics (all eight) on 64 pairs of 256x256: {ms_per_pair:.3f} ms/pair", flush=True)
    return result


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


def cpu_section(args, fresh_net, datamodule) -> dict:
    """CPU: plain loop vs Lightning, channels-last and bf16 variants, GFLOP/s vs torch.mm, a quality check."""
    flops = conv_flops_per_image(fresh_net(), args.image_size, 1)
    peak = mm_gflops()
    results: dict = {"forward_gflop_per_image": flops / 1e9, "mm4096_gflops": peak, "variants": {}}

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

    return results


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
    parser.add_argument("--devices", type=int, default=1, help="CPU: >1 adds a DDP scaling run; GPU: GPUs used")
    parser.add_argument("--gpu-image-size", type=int, default=256, help="image size of the GPU measurements")
    parser.add_argument("--skip-cpu", action="store_true", help="on a GPU machine: only the GPU measurements")
    parser.add_argument("--out", default="bench_results/bench_train.json")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.base_channels, args.steps, args.quality_steps = 64, 8, 5, 10
        args.gpu_image_size = 64

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

    results: dict = {
        "config": vars(args),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    if not args.skip_cpu:
        results.update(cpu_section(args, fresh_net, datamodule))
    if args.devices > 1 and not torch.cuda.is_available():
        results["ddp_cpu"] = ddp_scaling(args, fresh_net, datamodule)
    if torch.cuda.is_available():
        results["gpu"] = gpu_section(args, fresh_net)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
