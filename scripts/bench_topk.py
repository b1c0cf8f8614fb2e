"""Top-9 pass: forward time vs top-k bookkeeping, and the cost of cropping + drawing the grid.

One depth-4 U-Net (base 32, random weights, eval mode), 256 shapes images of 128x128, every channel of ``enc2``;
the pass streams the data set once (``unetlab.explain.topk.top_units``) and runs only the encoder up to the key.
The pass is timed from outside ``top_units``: hooks on the network time the forward (first encoder block in to the
key's block, or the head, out), a wrapper around the loader times the batches; the top-k bookkeeping is the rest.

    python scripts/bench_topk.py                     # the numbers in the report
    python scripts/bench_topk.py --images 32 --size 64 --repeats 1   # smoke run
Prints a table and writes JSON (default bench_results/bench_topk.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from unetlab import UNet
from unetlab.data.shapes import ShapesDataset
from unetlab.explain.pictures import save_grid
from unetlab.explain.topk import key_channels, top_units

CL = torch.channels_last


class Clock:
    """Seconds spent in the forward passes and in fetching batches during one ``top_units`` pass over ``key``."""

    def __init__(self, net: UNet, key: str):
        self.forward_s = self.loader_s = 0.0
        self.started = 0.0
        # top_units runs only the encoder for an encoder key, the whole network (to the head) for any other.
        last = net.encoder[int(key.removeprefix("enc"))] if key.startswith("enc") else net.head
        self.hooks = [
            net.encoder[0].register_forward_pre_hook(self.start),
            last.register_forward_hook(self.stop),
        ]

    def start(self, *_) -> None:
        self.started = time.perf_counter()

    def stop(self, *_) -> None:
        self.forward_s += time.perf_counter() - self.started

    def batches(self, loader: Iterable) -> Iterator:
        """``loader``'s batches, timing each fetch."""
        batches = iter(loader)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            self.loader_s += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--base", type=int, default=32)
    parser.add_argument("--key", default="enc2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3, help="passes timed; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("bench_results/bench_topk.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    dataset = ShapesDataset("test", args.images, image_size=args.size)
    data_s = time.perf_counter() - start
    torch.manual_seed(0)
    net = UNet(depth=args.depth, base_channels=args.base).eval()
    channels = list(range(key_channels(net, args.key)))
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)

    def timed_passes(net: UNet) -> dict[str, float]:
        top_units(net, [next(iter(loader))], {args.key: channels}, k=args.k)  # warm-up (allocator, kernels)
        passes = []
        for _ in range(args.repeats):
            clock = Clock(net, args.key)
            start = time.perf_counter()
            top_units(net, clock.batches(loader), {args.key: channels}, k=args.k)
            total_s = time.perf_counter() - start
            clock.remove()
            topk_s = total_s - clock.forward_s - clock.loader_s
            passes.append(
                {"total_s": total_s, "forward_s": clock.forward_s, "loader_s": clock.loader_s, "topk_s": topk_s}
            )
        passes.sort(key=lambda timing: timing["total_s"])
        return {**passes[len(passes) // 2], "all_total_s": [timing["total_s"] for timing in passes]}

    median = timed_passes(net)
    channels_last = timed_passes(UNet(depth=args.depth, base_channels=args.base).eval().to(memory_format=CL))

    grid_channels = channels[:8]
    subset = top_units(net, loader, {args.key: grid_channels}, k=args.k)[args.key]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        save_grid(net, dataset, subset, Path(tmp) / "grid.png")
        grid_s = time.perf_counter() - start

    report = {
        "setup": {
            "images": args.images,
            "image_size": args.size,
            "depth": args.depth,
            "base_channels": args.base,
            "key": args.key,
            "channels": len(channels),
            "k": args.k,
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.platform(),
            "processor": platform.processor(),
        },
        "data_generation_s": data_s,
        "pass_total_s": median["total_s"],
        "forward_s": median["forward_s"],
        "topk_bookkeeping_s": median["topk_s"],
        "loader_s": median["loader_s"],
        "forward_share": median["forward_s"] / median["total_s"],
        "images_per_s": args.images / median["total_s"],
        "all_passes_total_s": median["all_total_s"],
        "channels_last": {
            "pass_total_s": channels_last["total_s"],
            "forward_s": channels_last["forward_s"],
            "topk_bookkeeping_s": channels_last["topk_s"],
        },
        "grid_png_8_channels_s": grid_s,
    }
    print(
        f"top-{args.k} over {args.images} images {args.size}x{args.size}, depth {args.depth} base {args.base}, "
        f"{args.key} ({len(channels)} channels), batch {args.batch_size}, {torch.get_num_threads()} threads"
    )
    print(f"  data generation (not in the pass)  {data_s:7.2f} s")
    rate = report["images_per_s"]
    print(f"  pass total (median of {args.repeats})        {median['total_s']:7.2f} s  ({rate:.0f} img/s)")
    print(f"    forward                          {median['forward_s']:7.2f} s  ({100 * report['forward_share']:.0f}%)")
    print(f"    top-k bookkeeping                {median['topk_s']:7.3f} s")
    print(f"    loader                           {report['loader_s']:7.3f} s")
    total, forward = channels_last["total_s"], channels_last["forward_s"]
    print(f"  same pass, channels_last weights   {total:7.2f} s  (forward {forward:.2f} s)")
    print(f"  crops + grid PNG, 8 channels       {grid_s:7.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
