"""Linear vs non-linear depth probes: does a hidden layer change what each feature key finds and places?

For every run: the linear probes of ``unetlab-eval`` (``train_probes``: standardise, 1x1 conv, bilinear read-out,
full-batch L-BFGS on the network's loss over a seeded pool of training images) and, on the same pool, features, loss
and optimiser, a non-linear probe per key (standardise, 1x1 conv C -> hidden, ReLU, 1x1 conv hidden -> K, the same
read-out). Both, and the resolution floor of each level, are scored on the test split: per object (share of
ground-truth objects detected at IoU >= 0.5, hd95 of the detected ones; overall and per size bin) and per image
(hd95, dice). ``docs/probes-and-floors.md`` ("Linear vs non-linear probes") has the numbers.

    python scripts/probe_nonlinear.py RUN_DIR [RUN_DIR ...] --out probe_nonlinear.json
Prints one table per model kind (depth and skip set): mean over the runs and min-max, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from unetlab.conventions import feature_keys, level_of, skip_label
from unetlab.evaluation.floors import cached_floor, read_out
from unetlab.evaluation.probes import Standardised, fit_probes, pool_features, train_probes
from unetlab.metrics import BoundaryMetrics, ObjectMetrics
from unetlab.metrics.classes import OBJECT_COLUMNS
from unetlab.models.unet import UNet
from unetlab.runs.checkpoint import LoadedRun, load_run


class MLPProbe(Standardised):
    """Standardise channels, 1x1 conv C -> hidden, ReLU, 1x1 conv hidden -> K, bilinear upsampling:
    (B, C, h, w) -> logits (B, K, H, W). ``LinearProbe`` with a hidden layer."""

    def __init__(self, channels: int, num_classes: int, hidden: int):
        super().__init__(channels)
        self.hidden = nn.Linear(channels, hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, features: Tensor, size: Sequence[int], standardised: bool = False) -> Tensor:
        features = features if standardised else self.standardise(features)
        # 1x1 convolutions as matrix products over channels, as LinearProbe computes its one.
        hidden = torch.relu(self.hidden(features.movedim(1, -1)))  # (B, h, w, hidden)
        return read_out(self.out(hidden).movedim(-1, 1), tuple(size))  # (B, K, H, W)


def train_mlp_probes(
    net: UNet,
    dataset: Dataset,
    num_classes: int,
    hidden: int,
    steps: int,
    seed: int,
    pool: int,
    ignore_index: int = 255,
) -> tuple[nn.ModuleDict, list[float]]:
    """One ``MLPProbe`` per key, trained exactly as ``train_probes`` trains the linear ones: all keys together on the
    summed ``NetworkLoss``, full-batch L-BFGS (strong Wolfe, lr 1, history 20), at most ``steps`` loss evaluations.
    Returns the probes (eval mode) and the loss at every evaluation."""
    torch.manual_seed(seed)
    keys = feature_keys(net.depth, logits=False)
    features, masks = pool_features(net.eval(), dataset, keys, pool, seed)
    probes = nn.ModuleDict({key: MLPProbe(features[key].shape[1], num_classes, hidden) for key in keys})
    losses = fit_probes(probes, features, masks, num_classes, steps, ignore_index)
    return probes.eval(), losses


def object_summary(metric: ObjectMetrics) -> dict[str, float]:
    """Share of ground-truth objects detected and mean hd95 of the detected ones, over all objects and per size
    bin (``detected``, ``hd95``, ``objects``, then ``detected/<bin>`` ...)."""
    totals = metric.per_image_values().sum(dim=(0, 1))  # (bins, OBJECT_COLUMNS)

    def shares(cells: Tensor) -> dict[str, float]:
        objects, detected, hd95 = (cells[OBJECT_COLUMNS.index(name)].item() for name in ("objects", "detected", "hd95"))
        return {
            "objects": objects,
            "detected": detected / objects if objects else math.nan,
            "hd95": hd95 / detected if detected else math.nan,
        }

    out = shares(totals.sum(dim=0))
    for name, cells in zip(metric.bin_names, totals):
        out.update({f"{column}/{name}": value for column, value in shares(cells).items()})
    return out


def score(run: LoadedRun, probes: dict[str, nn.ModuleDict]) -> dict[str, dict[str, float]]:
    """Every probe (``<kind>/<key>``) and floor (``floor/<level>``) on the test split: image hd95 and dice (class
    mean) and the object summary."""
    net, datamodule = run.net, run.datamodule
    num_classes, ignore, spacing = net.num_classes, datamodule.ignore_index, datamodule.spacing
    sources = [f"{kind}/{key}" for kind, heads in probes.items() for key in heads]
    sources += [f"floor/{level}" for level in range(net.depth + 1)]
    images_metric = {source: BoundaryMetrics(num_classes, ignore_index=ignore, spacing=spacing) for source in sources}
    objects_metric = {source: ObjectMetrics(num_classes, ignore_index=ignore, spacing=spacing) for source in sources}

    def update(source: str, labels: Tensor, masks: Tensor) -> None:
        images_metric[source].update(labels, masks)
        objects_metric[source].update(labels, masks)

    test_masks = []
    with torch.no_grad():
        for images, masks in DataLoader(datamodule.datasets["test"], batch_size=16, shuffle=False):
            features = net.features(images)
            for kind, heads in probes.items():
                for key, probe in heads.items():
                    update(f"{kind}/{key}", probe(features[key], masks.shape[-2:]).argmax(dim=1), masks)
            test_masks.append(masks)
    masks = torch.cat(test_masks)
    for level in range(net.depth + 1):
        update(f"floor/{level}", cached_floor(masks, level, num_classes, ignore), masks)
    out = {}
    for source in sources:
        image = images_metric[source].compute()
        out[source] = {"image_hd95": image["hd95"].item(), "dice": image["dice"].item()}
        out[source] |= object_summary(objects_metric[source])
    return out


def checkpoint_of(run_dir: Path) -> Path:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} is missing: give run folders of unetlab-train (<run>/checkpoints/last.ckpt)")
    return ckpt


def probe_run(run_dir: Path, args: argparse.Namespace) -> dict:
    """Train both probe kinds on one run and score them: the run's model kind, seed, the scores and seconds."""
    run = load_run(checkpoint_of(run_dir))
    net, datamodule = run.net, run.datamodule
    dataset, num_classes, ignore = datamodule.datasets["train"], net.num_classes, datamodule.ignore_index
    start = time.perf_counter()
    linear = train_probes(
        net, dataset, num_classes, steps=args.steps, seed=args.seed, ignore_index=ignore, progress=False,
        pool=args.pool,
    )  # fmt: skip
    linear_seconds = time.perf_counter() - start
    start = time.perf_counter()
    mlp, losses = train_mlp_probes(net, dataset, num_classes, args.hidden, args.steps, args.seed, args.pool, ignore)
    mlp_seconds = time.perf_counter() - start
    if not all(math.isfinite(loss) for loss in losses):
        raise FloatingPointError(f"{run_dir}: the non-linear probes' L-BFGS loss became non-finite: {losses[-5:]}")
    start = time.perf_counter()
    scores = score(run, {"linear": linear, "mlp": mlp})
    return {
        "run_dir": str(run_dir),
        "depth": net.depth,
        "skips": skip_label(net.skip_levels, net.depth),
        "model_seed": int(run.cfg.seed),
        "scores": scores,
        "mlp_loss": {"first": losses[0], "last": losses[-1], "evaluations": len(losses)},
        "seconds": {"linear": linear_seconds, "mlp": mlp_seconds, "score": time.perf_counter() - start},
    }


COLUMNS = (("detected", "det", 100.0), ("hd95", "hd95 obj", 1.0), ("image_hd95", "hd95 img", 1.0))


def summarise(results: list[dict]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per model kind (``d<depth> <skips>``), per source and value: mean, min, max and n over the runs."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        groups[f"d{result['depth']} {result['skips']}"].append(result)
    out: dict = {}
    for group, runs in groups.items():
        out[group] = {}
        for source in runs[0]["scores"]:
            out[group][source] = {}
            for name in runs[0]["scores"][source]:
                values = [run["scores"][source][name] for run in runs]
                finite = [v for v in values if not math.isnan(v)]
                out[group][source][name] = {
                    "mean": sum(finite) / len(finite) if finite else math.nan,
                    "min": min(finite, default=math.nan),
                    "max": max(finite, default=math.nan),
                    "n": len(finite),
                }
    return out


def table(summary: dict, depth: int, group: str) -> str:
    """Rows per feature key: linear, non-linear and the key's floor, each ``mean [min-max]`` over the runs."""

    def cell(stats: dict[str, float], scale: float) -> str:
        if stats["n"] == 0:
            return f"{'-':>17s}"
        mean, low, high = (scale * stats[k] for k in ("mean", "min", "max"))
        return f"{mean:5.1f} [{low:4.1f}-{high:4.1f}]" if stats["n"] > 1 else f"{mean:5.1f}{'':12s}"

    head = "  ".join(f"{label:>17s}" for _, label, _ in COLUMNS)
    lines = [
        f"{group}: detected %, hd95 of detected objects (px), image hd95 (px); mean [min-max] over runs",
        f"{'key':7s}| {'linear':^55s} | {'non-linear':^55s} | {'floor':^55s}",
        f"{'':7s}| {head} | {head} | {head}",
    ]
    for key in feature_keys(depth, logits=False):
        row = []
        for source in (f"linear/{key}", f"mlp/{key}", f"floor/{level_of(key)}"):
            row.append("  ".join(cell(summary[group][source][name], scale) for name, _, scale in COLUMNS))
        lines.append(f"{key:7s}| " + " | ".join(row))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders of unetlab-train")
    parser.add_argument("--out", type=Path, default=Path("bench_results/probe_nonlinear.json"))
    parser.add_argument("--pool", type=int, default=64, help="training images of the probes (eval.probe_images)")
    parser.add_argument("--steps", type=int, default=100, help="L-BFGS loss evaluations of both probe kinds")
    parser.add_argument("--hidden", type=int, default=64, help="hidden channels of the non-linear probe")
    parser.add_argument("--seed", type=int, default=0, help="seeds the pool and the probes' initialisation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    results = []
    for run_dir in tqdm(args.run_dirs, desc="runs"):
        results.append(probe_run(run_dir, args))
        seconds = results[-1]["seconds"]
        tqdm.write(
            f"{run_dir}: linear {seconds['linear']:.1f} s, non-linear {seconds['mlp']:.1f} s, "
            f"scoring {seconds['score']:.1f} s"
        )
    summary = summarise(results)
    for group in summary:
        depth = next(r["depth"] for r in results if f"d{r['depth']} {r['skips']}" == group)
        print(table(summary, depth, group) + "\n")
    seconds = time.perf_counter() - start
    print(f"{len(results)} runs in {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "run_dirs"},
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "seconds": seconds,
        "summary": summary,
        "runs": results,
    }
    args.out.write_text(json.dumps(report, indent=1, default=lambda v: [str(x) for x in v]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
