"""Benchmark unetlab's boundary metrics against MONAI and torchmetrics on the same mask pairs.

Each size gets a batch of random mask pairs: targets are unions of ellipses and stars; predictions
are the targets shifted, eroded or dilated by a few pixels, with an object missed now and then and
false-positive blobs added. Every tool sees the same pairs; times are the median of ``--repeats``
runs over the whole batch, reported per pair.

- unetlab: all eight metrics (dice, iou, hd, hd95, assd, nsd, bf1, biou) in one call.
- MONAI: hd95, assd and nsd, three calls (``compute_hausdorff_distance(percentile=95)``,
  ``compute_average_surface_distance(symmetric=True)``, ``compute_surface_dice``).
- torchmetrics: ``hausdorff_distance`` only, on the first ``--torchmetrics-pairs`` pairs and only
  up to ``--torchmetrics-max-side`` (it takes seconds and gigabytes per 256² pair).

Physical units: one more case, the 256² pairs with the anisotropic pixel size ``SPACING`` (sy, sx),
unetlab's eight metrics against MONAI's three, both given that ``spacing`` (tolerance in its unit).

Volumes: ``--volumes`` pairs of ``VOLUME_SHAPE`` voxels with the voxel size ``VOLUME_SPACING`` (sz, sy, sx) (mm):
targets are unions of ellipsoids defined in millimetres, predictions moved by up to two voxels per axis, grown or
shrunk by a voxel, an object missed now and then, a false blob added. unetlab's eight metrics
(``spatial_dims=3``) against MONAI's three, both given the spacing, and against DeepMind's ``surface-distance``
(``pip install surface-distance``; its robust Hausdorff, average surface distance and surface Dice, which weigh
surface elements by area: other definitions, timed only) where it is installed. Peak memory as below.

Per object and over tolerances: at every size, the per-object pass (``ObjectMetrics.update``: components, matching,
hd95 and assd per matched pair) and the eight image metrics with nsd and bf1 at five more tolerances
(``BoundaryMetrics(tolerances=...)``) against the eight image metrics alone (``BoundaryMetrics.update``), on the same
label maps: the ratios are the cost of the per-object rows and of the tolerance sweep.

Peak memory: a fresh child process loads the largest batch, resets its peak resident set size
(``/proc/self/clear_refs``), computes the metrics once and reports ``VmHWM`` (peak RSS) minus the
RSS before the call. RSS counts every allocator (torch, NumPy, scipy; ``tracemalloc`` would miss
torch's own).

Threads: ``--threads 1`` by default. On a shared 2-core machine, torch's OpenMP threads stall
whenever another process holds a core, which makes multi-threaded timings swing by 10-100x;
MONAI's distance code is single-threaded anyway. ``--threads 0`` keeps torch's default.

    python scripts/bench_metrics.py                 # full run -> bench_results/bench_metrics.json
    python scripts/bench_metrics.py --quick         # small batches, a smoke test
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unetlab.metrics import BoundaryMetrics, ObjectMetrics  # noqa: E402
from unetlab.metrics import functional as F  # noqa: E402

SIZES = ((128, 64), (256, 32), (512, 8))  # (side, pairs)
QUICK_SIZES = ((128, 8), (256, 4), (512, 2))
TOLERANCE = 2.0
SPACING = (0.5, 0.25)  # (sy, sx) of the physical-units case
SPACING_SIDE = 256
VOLUME_SHAPE = (96, 96, 96)  # (D, H, W) voxels of the volume case
VOLUME_SPACING = (2.5, 0.8, 0.8)  # (sz, sy, sx) in mm


def make_pairs(num_pairs: int, side: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (pred, target) bool masks (num_pairs, side, side); see the module docstring."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side].astype(np.float64)
    preds, targets = [], []
    for _ in range(num_pairs):
        objects = [_random_object(rng, yy, xx, side) for _ in range(rng.integers(1, 4))]
        target = np.logical_or.reduce(objects)
        kept = [obj for obj in objects if rng.random() > 0.1] or objects[:1]
        pred = np.logical_or.reduce(kept)
        shift = rng.integers(-3, 4, size=2)
        pred = np.roll(pred, tuple(shift), axis=(0, 1))
        change = rng.integers(-2, 3)
        if change > 0:
            pred = ndimage.binary_dilation(pred, iterations=int(change))
        elif change < 0:
            pred = ndimage.binary_erosion(pred, iterations=int(-change))
        for _ in range(rng.integers(0, 3)):
            cy, cx = rng.uniform(0, side, size=2)
            radius = rng.uniform(0.02, 0.06) * side
            pred |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        preds.append(pred)
        targets.append(target)
    return torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets))


def _random_object(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, side: int) -> np.ndarray:
    cy, cx = rng.uniform(0.2, 0.8, size=2) * side
    radius = rng.uniform(0.08, 0.25) * side
    dy, dx = yy - cy, xx - cx
    angle = np.arctan2(dy, dx)
    if rng.random() < 0.5:
        aspect, tilt = rng.uniform(0.4, 1.0), rng.uniform(0, np.pi)
        u = dx * np.cos(tilt) + dy * np.sin(tilt)
        v = -dx * np.sin(tilt) + dy * np.cos(tilt)
        return (u / radius) ** 2 + (v / (aspect * radius)) ** 2 <= 1
    lobes, amplitude, phase = rng.integers(3, 9), rng.uniform(0.1, 0.4), rng.uniform(0, 2 * np.pi)
    return np.hypot(dy, dx) <= radius * (1 + amplitude * np.sin(lobes * angle + phase))


def make_volume_pairs(num_pairs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (pred, target) bool volumes (num_pairs, *VOLUME_SHAPE); see the module docstring."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(VOLUME_SHAPE, VOLUME_SPACING)], indexing="ij")
    extent = np.asarray(VOLUME_SHAPE) * np.asarray(VOLUME_SPACING)
    preds, targets = [], []
    for _ in range(num_pairs):
        objects = []
        for _ in range(rng.integers(1, 4)):
            centre = rng.uniform(0.25, 0.75, size=3) * extent
            radii = rng.uniform(6.0, 20.0, size=3)  # mm
            objects.append(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1)
        target = np.logical_or.reduce(objects)
        kept = [obj for obj in objects if rng.random() > 0.1] or objects[:1]
        pred = np.roll(np.logical_or.reduce(kept), tuple(rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
        change = rng.integers(-1, 2)
        if change > 0:
            pred = ndimage.binary_dilation(pred)
        elif change < 0:
            pred = ndimage.binary_erosion(pred)
        if rng.random() < 0.5:
            centre, radius = rng.uniform(0.2, 0.8, size=3) * extent, rng.uniform(3.0, 6.0)
            pred |= sum(((g - c) / radius) ** 2 for g, c in zip(grid, centre)) <= 1
        preds.append(pred)
        targets.append(target)
    return torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets))


def unetlab_call(
    pred: torch.Tensor, target: torch.Tensor, spacing: tuple[float, ...] = (1.0, 1.0)
) -> Callable[[], object]:
    dims = len(spacing)
    return lambda: F.boundary_metrics(pred, target, tolerance=TOLERANCE, spacing=spacing, spatial_dims=dims)


def deepmind_call(pred: torch.Tensor, target: torch.Tensor, spacing: tuple[float, ...]) -> Callable[[], object] | None:
    """DeepMind's surface-distance: robust Hausdorff (95), average surface distance and surface Dice per pair."""
    try:
        import surface_distance as sd
    except ImportError:
        return None
    pairs = [(p.numpy(), t.numpy()) for p, t in zip(pred, target)]

    def run() -> list:
        out = []
        for p, t in pairs:
            distances = sd.compute_surface_distances(t, p, spacing)
            out.append((
                sd.compute_robust_hausdorff(distances, 95),
                sd.compute_average_surface_distance(distances),
                sd.compute_surface_dice_at_tolerance(distances, TOLERANCE),
            ))  # fmt: skip
        return out

    return run


def monai_call(
    pred: torch.Tensor, target: torch.Tensor, spacing: tuple[float, float] | None = None
) -> Callable[[], object] | None:
    try:
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice
    except ImportError:
        return None
    y_pred, y = pred[:, None].float(), target[:, None].float()
    common = {"include_background": True, "spacing": spacing}

    def run() -> dict[str, torch.Tensor]:
        return {
            "hd95": compute_hausdorff_distance(y_pred, y, percentile=95, **common)[:, 0],
            "assd": compute_average_surface_distance(y_pred, y, symmetric=True, **common)[:, 0],
            "nsd": compute_surface_dice(y_pred, y, class_thresholds=[TOLERANCE], **common)[:, 0],
        }

    return run


def torchmetrics_call(pred: torch.Tensor, target: torch.Tensor) -> Callable[[], object] | None:
    try:
        from torchmetrics.functional.segmentation import hausdorff_distance
    except ImportError:
        return None
    y_pred, y = pred[:, None].long(), target[:, None].long()
    return lambda: hausdorff_distance(y_pred, y, num_classes=1, include_background=True, input_format="one-hot")


TOOLS = {"unetlab": unetlab_call, "monai": monai_call, "torchmetrics": torchmetrics_call}


def time_ms(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall time of ``run`` in ms over ``repeats`` runs after one warm-up run."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def paired_ratios(other: Callable[[], object], ours: Callable[[], object], repeats: int) -> list[float]:
    """``repeats`` ratios time(other) / time(ours), each from two calls made back to back (order alternating): on a
    shared machine the load changes between two timing loops, but rarely within one round."""
    ratios = []
    for round_ in range(repeats):
        times = {}
        for name in ("other", "ours") if round_ % 2 else ("ours", "other"):
            start = time.perf_counter()
            (other if name == "other" else ours)()
            times[name] = time.perf_counter() - start
        ratios.append(times["other"] / times["ours"])
    return ratios


def max_difference_vs_monai(
    pred: torch.Tensor, target: torch.Tensor, spacing: tuple[float, ...] = (1.0, 1.0)
) -> dict[str, float] | None:
    """Largest |unetlab - MONAI| per metric over the pairs where MONAI is finite."""
    monai = monai_call(pred, target, spacing)
    if monai is None:
        return None
    theirs = monai()
    ours = unetlab_call(pred, target, spacing)()
    differences = {}
    for name, values in theirs.items():
        finite = torch.isfinite(values)
        differences[name] = float((ours[name][finite] - values[finite].float()).abs().max()) if finite.any() else 0.0
    return differences


def memory_status_mb(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def memory_probe(tool: str, pairs_file: str) -> None:
    """Child-process entry: prints the extra peak RSS (MiB) of one call of ``tool`` (volumes: with their spacing)."""
    pred, target = torch.load(pairs_file)
    run = TOOLS[tool](pred, target) if pred.ndim == 3 else TOOLS[tool](pred, target, VOLUME_SPACING)
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        peak_reset = True
    except OSError:
        peak_reset = False  # VmHWM then also holds the start-up peak: an upper bound
    before = memory_status_mb("VmRSS")
    run()
    peak = memory_status_mb("VmHWM")
    print(json.dumps({"extra_peak_mb": peak - before, "rss_before_mb": before, "peak_reset": peak_reset}))


def measure_memory(tool: str, pred: torch.Tensor, target: torch.Tensor) -> dict | None:
    if sys.platform != "linux":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = str(Path(tmp) / "pairs.pt")
        torch.save((pred, target), pairs_file)
        command = [
            sys.executable,
            __file__,
            "--threads",
            str(torch.get_num_threads()),
            "--memory-probe",
            tool,
            pairs_file,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_volumes(num_pairs: int, args: argparse.Namespace) -> dict:
    """The volume case: ``num_pairs`` pairs of ``VOLUME_SHAPE`` with ``VOLUME_SPACING``; unetlab vs MONAI (and
    DeepMind's surface-distance where installed), ms per pair, agreement with MONAI and peak memory."""
    pred, target = make_volume_pairs(num_pairs, seed=args.seed + 3)
    calls = {
        "unetlab": unetlab_call(pred, target, VOLUME_SPACING),
        "monai": monai_call(pred, target, VOLUME_SPACING),
        "surface_distance": deepmind_call(pred, target, VOLUME_SPACING),
    }
    row = {"shape": list(VOLUME_SHAPE), "pairs": num_pairs, "spacing": list(VOLUME_SPACING), "ms_per_pair": {},
           "min_ms_per_pair": {}}  # fmt: skip
    for tool, run in calls.items():
        if run is None:
            continue
        median, fastest = time_ms(run, args.repeats)
        row["ms_per_pair"][tool], row["min_ms_per_pair"][tool] = median / num_pairs, fastest / num_pairs
        print(
            f"{'x'.join(map(str, VOLUME_SHAPE))} spacing {VOLUME_SPACING} {tool:>16}: {median / num_pairs:9.3f} "
            f"ms/pair median, {fastest / num_pairs:9.3f} min ({num_pairs} pairs)",
            flush=True,
        )
    for tool in ("monai", "surface_distance"):
        if tool in row["ms_per_pair"]:
            row[f"speedup_vs_{tool}"] = row["ms_per_pair"][tool] / row["ms_per_pair"]["unetlab"]
            row[f"speedup_vs_{tool}_min"] = row["min_ms_per_pair"][tool] / row["min_ms_per_pair"]["unetlab"]
            paired = paired_ratios(calls[tool], calls["unetlab"], args.repeats)
            row[f"speedup_vs_{tool}_paired"] = statistics.median(paired)
            print(f"volumes: unetlab speed-up vs {tool}: {row[f'speedup_vs_{tool}']:.1f}x median, "
                  f"{row[f'speedup_vs_{tool}_min']:.1f}x min, {row[f'speedup_vs_{tool}_paired']:.1f}x median of "
                  f"{len(paired)} paired rounds ({min(paired):.1f}-{max(paired):.1f}x)", flush=True)  # fmt: skip
    if calls["monai"] is not None:
        row["max_abs_difference_vs_monai"] = max_difference_vs_monai(pred, target, VOLUME_SPACING)
        print(f"volumes: max |difference| vs MONAI {row['max_abs_difference_vs_monai']}", flush=True)
    row["extra_peak_mb"] = {}
    for tool in ("unetlab", "monai"):
        if calls[tool] is not None:
            memory = measure_memory(tool, pred, target)
            if memory:
                row["extra_peak_mb"][tool] = memory["extra_peak_mb"]
                print(f"volumes x {num_pairs} {tool:>8}: extra peak RSS {memory['extra_peak_mb']:.1f} MB", flush=True)
    return row


def bench_spacing(sizes: tuple[tuple[int, int], ...], args: argparse.Namespace) -> dict:
    """The physical-units case: the ``SPACING_SIDE`` pairs with ``spacing=SPACING``, unetlab vs MONAI."""
    side, num_pairs = next((size for size in sizes if size[0] == SPACING_SIDE), sizes[0])
    pred, target = make_pairs(num_pairs, side, seed=args.seed + side)
    row = {"side": side, "pairs": num_pairs, "spacing": list(SPACING), "ms_per_pair": {}, "min_ms_per_pair": {}}
    for tool, run in (("unetlab", unetlab_call(pred, target, SPACING)), ("monai", monai_call(pred, target, SPACING))):
        if run is None:
            continue
        median, fastest = time_ms(run, args.repeats)
        row["ms_per_pair"][tool], row["min_ms_per_pair"][tool] = median / num_pairs, fastest / num_pairs
        print(
            f"{side:4d}² spacing {SPACING} {tool:>8}: {median / num_pairs:9.3f} ms/pair median, "
            f"{fastest / num_pairs:9.3f} min ({num_pairs} pairs)",
            flush=True,
        )
    if "monai" in row["ms_per_pair"]:
        row["speedup_vs_monai"] = row["ms_per_pair"]["monai"] / row["ms_per_pair"]["unetlab"]
        row["speedup_vs_monai_min"] = row["min_ms_per_pair"]["monai"] / row["min_ms_per_pair"]["unetlab"]
        row["max_abs_difference_vs_monai"] = max_difference_vs_monai(pred, target, SPACING)
        print(
            f"{side:4d}² spacing {SPACING} unetlab speed-up vs MONAI: {row['speedup_vs_monai']:.1f}x median, "
            f"{row['speedup_vs_monai_min']:.1f}x min; max |difference| {row['max_abs_difference_vs_monai']}",
            flush=True,
        )
    return row


SWEPT_TOLERANCES = (0.5, 1.0, 2.0, 4.0, 8.0)  # eval.tolerances' default


def bench_objects(sizes: tuple[tuple[int, int], ...], args: argparse.Namespace) -> list[dict]:
    """Per size: ms per pair of the image metrics, of the per-object pass and of the image metrics with the tolerance
    sweep (all three on label maps, as ``unetlab-eval`` runs them), and the two ratios to the image metrics."""
    rows = []
    for side, num_pairs in sizes:
        pred, target = make_pairs(num_pairs, side, seed=args.seed + side)
        pred, target = pred.long(), target.long()
        metrics = {
            "image_metrics": lambda: BoundaryMetrics(2, TOLERANCE),
            "per_object": lambda: ObjectMetrics(2),
            "image_metrics_with_tolerances": lambda: BoundaryMetrics(2, TOLERANCE, tolerances=SWEPT_TOLERANCES),
        }
        row = {"side": side, "pairs": num_pairs, "ms_per_pair": {}}
        for name, make in metrics.items():
            median, _ = time_ms(lambda make=make, pred=pred, target=target: make().update(pred, target), args.repeats)
            row["ms_per_pair"][name] = median / num_pairs
        base = row["ms_per_pair"]["image_metrics"]
        row["per_object_ratio"] = row["ms_per_pair"]["per_object"] / base
        row["tolerance_sweep_ratio"] = row["ms_per_pair"]["image_metrics_with_tolerances"] / base
        print(
            f"{side:4d}² image metrics {base:.3f} ms/pair; per object {row['ms_per_pair']['per_object']:.3f} "
            f"({row['per_object_ratio']:.2f}x); with {len(SWEPT_TOLERANCES)} tolerances "
            f"{row['ms_per_pair']['image_metrics_with_tolerances']:.3f} ({row['tolerance_sweep_ratio']:.2f}x)",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per tool and size (median reported)")
    parser.add_argument("--quick", action="store_true", help="small batches, a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torchmetrics-pairs", type=int, default=1, help="pairs given to torchmetrics per size")
    parser.add_argument("--torchmetrics-max-side", type=int, default=256, help="skip torchmetrics above this side")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--volumes", type=int, default=4, help="volume pairs of the 3D case (0: skip it)")
    parser.add_argument("--only-volumes", action="store_true", help="run the 3D case alone")
    parser.add_argument("--out", type=Path, default=Path("bench_results/bench_metrics.json"))
    parser.add_argument("--memory-probe", nargs=2, metavar=("TOOL", "PAIRS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="monai")  # deprecations and empty-mask notices
    if args.memory_probe:
        memory_probe(*args.memory_probe)
        return

    sizes = QUICK_SIZES if args.quick else SIZES
    load_at_start = os.getloadavg()
    if args.only_volumes:
        report = {"command": " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
                  "load_average_at_start": load_at_start, "volume_case": bench_volumes(max(1, args.volumes), args),
                  "load_average_at_end": os.getloadavg()}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
        return
    notes = []
    for tool in ("monai", "torchmetrics"):
        if TOOLS[tool](torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool)) is None:
            notes.append(f"{tool} is not installed: skipped")
    results = []
    for side, num_pairs in sizes:
        pred, target = make_pairs(num_pairs, side, seed=args.seed + side)
        row = {"side": side, "pairs": num_pairs, "ms_per_pair": {}, "min_ms_per_pair": {}, "pairs_timed": {}}
        for tool, make_call in TOOLS.items():
            count = num_pairs
            if tool == "torchmetrics":
                if side > args.torchmetrics_max_side:
                    notes.append(f"torchmetrics skipped at {side}² (over --torchmetrics-max-side, memory)")
                    continue
                count = min(num_pairs, args.torchmetrics_pairs)
            run = make_call(pred[:count], target[:count])
            if run is None:
                continue
            median, fastest = time_ms(run, args.repeats)
            row["ms_per_pair"][tool], row["min_ms_per_pair"][tool] = median / count, fastest / count
            row["pairs_timed"][tool] = count
            print(
                f"{side:4d}² {tool:>12}: {median / count:9.3f} ms/pair median, {fastest / count:9.3f} min "
                f"({count} pairs)",
                flush=True,
            )
        if "monai" in row["ms_per_pair"]:
            for key in ("ms_per_pair", "min_ms_per_pair"):
                monai_ms = row[key]["monai"]
                speedup_key = "speedup_vs_monai" + ("" if key == "ms_per_pair" else "_min")
                row[speedup_key] = {tool: monai_ms / ms for tool, ms in row[key].items()}
            row["max_abs_difference_vs_monai"] = max_difference_vs_monai(pred, target)
            print(
                f"{side:4d}² unetlab speed-up vs MONAI: {row['speedup_vs_monai']['unetlab']:.1f}x median, "
                f"{row['speedup_vs_monai_min']['unetlab']:.1f}x min",
                flush=True,
            )
        results.append(row)

    spacing_case = bench_spacing(sizes, args)
    volume_case = bench_volumes(args.volumes, args) if args.volumes else None
    objects_case = bench_objects(((64, 256), *sizes) if not args.quick else ((64, 16), *sizes), args)

    side, num_pairs = sizes[-1]
    pred, target = make_pairs(num_pairs, side, seed=args.seed + side)
    memory = {}
    for tool in ("unetlab", "monai"):
        if TOOLS[tool](pred[:1], target[:1]) is not None:
            memory[tool] = measure_memory(tool, pred, target)
            if memory[tool]:
                print(f"{side:4d}² x {num_pairs} {tool:>8}: extra peak RSS {memory[tool]['extra_peak_mb']:.1f} MB")

    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "config": {
            "repeats": args.repeats,
            "quick": args.quick,
            "seed": args.seed,
            "tolerance": TOLERANCE,
            "command": " ".join(sys.argv),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
        },
        "tools": {
            "unetlab": "dice, iou, hd, hd95, assd, nsd, bf1, biou (one call)",
            "monai": "hd95, assd, nsd (three calls)",
            "torchmetrics": "hausdorff_distance (hd)",
        },
        "sizes": results,
        "spacing_case": spacing_case,
        "volume_case": volume_case,
        "objects_case": objects_case,
        "peak_memory": {
            "batch": f"{num_pairs} pairs of {side}x{side}",
            "method": "child process: VmHWM after one call (peak reset before it) minus VmRSS before it",
            "extra_peak_mb": {tool: value["extra_peak_mb"] for tool, value in memory.items() if value},
        },
        "notes": sorted(set(notes)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
