"""The explorer's data (``docs/explorer.md``) from the files of a set of runs: ``label_maps.npz`` and ``per_image.npz``
beside each ``results.csv`` (written by ``unetlab-eval``) and a ``viz/explore.json`` (written by ``unetlab-viz``).

One run per model (its lowest seed). The images: of the first test images that every model's label maps hold (and
where the deepest no-skip model neither misses nor invents an object), the one where that model errs most (hd95), the
one where it errs least, and the median one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unetlab import sources
from unetlab.conventions import IGNORE_INDEX, level_of
from unetlab.encode import encode_labels, encode_png
from unetlab.metrics.classes import COLUMNS as PER_IMAGE_COLUMNS
from unetlab.metrics.distance import inner_boundary, surface_sq_distances
from unetlab.report.collect import Model, Results
from unetlab.report.learner import learner_data
from unetlab.report.queries import model_rows
from unetlab.runs.label_maps import read_label_maps, read_spacing, worst_slice
from unetlab.runs.results import read_per_image

# Bytes of label maps and pictures that the slices of the chosen volumes may take, so that the explorer stays one
# file well under 15 MB whatever the volumes' size (volumes larger than that show the slices around the worst one).
SLICE_BUDGET = 8 * 2**20


def image_values(per_image: torch.Tensor, metric: str) -> np.ndarray:
    """(M,) the per-image value of ``metric`` averaged over the foreground classes, as the ``mean`` rows average."""
    return per_image[:, :, PER_IMAGE_COLUMNS.index(metric)].mean(dim=1).numpy()


def boundaries(
    pred: np.ndarray, truth: np.ndarray, num_classes: int, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[list, list]:
    """Boundary pixels of prediction and truth (every foreground class), each ``[y, x, d]`` with ``d`` its exact
    distance (in the unit of ``spacing``, the pixel size) to the other mask's boundary of the same class, as hd95
    and assd measure it; where the other boundary is empty, the image diagonal (as the metrics count an empty mask)."""
    diagonal = round(float(np.hypot(pred.shape[0] * spacing[0], pred.shape[1] * spacing[1])), 3)
    pred_out, truth_out = [], []
    for label in range(1, num_classes):
        p = inner_boundary(torch.from_numpy(pred == label)[None])
        t = inner_boundary(torch.from_numpy(truth == label)[None])
        if not (p.any() or t.any()):
            continue
        segment, sq_distance = surface_sq_distances(p, t, spacing)
        distance = sq_distance.double().sqrt()
        points = torch.cat([p[0].nonzero(), t[0].nonzero()])  # row-major per segment, as surface_sq_distances orders
        for (y, x), s, d in zip(points.tolist(), segment.tolist(), distance.tolist(), strict=True):
            (pred_out if s == 0 else truth_out).append([y, x, round(d, 3) if np.isfinite(d) else diagonal])
    return pred_out, truth_out


def slices_shown(maps: dict, picked: list[tuple[str, int]]) -> int:
    """How many slices of each picked volume the explorer holds: all of them, or as many as keep its label maps and
    pictures (each ``H x W`` slice costs ``4/3 H W`` bytes of base64 per map: the image, the truth, every floor, and
    per model its prediction and each probe) under ``SLICE_BUDGET`` bytes."""
    first = next(iter(maps.values()))[picked[0][1]]
    if first["truth"].ndim != 3:
        return 1
    depth, height, width = first["truth"].shape
    per_map = 4 * height * width // 3
    floors = sum(1 for source in first if sources.floor_level(source) is not None)
    probes = sum(1 for m in maps.values() for source in m[picked[0][1]] if sources.probe_key(source))
    per_slice = per_map * (2 + floors + len(maps) + probes) * len(picked)
    return max(1, min(depth, SLICE_BUDGET // per_slice))


def run_dirs(results: Results) -> dict[Model, Path]:
    """Per model, the run dir of its lowest-seed run that has label maps."""
    by_name = {f"{path.parent.parent.name}/{path.parent.name}": path.parent for path in results.files}
    out = {}
    for model, names in results.runs.items():
        dirs = [by_name[name] for name in sorted(names) if name in by_name]
        dirs = [d for d in dirs if (d / "label_maps.npz").is_file() and (d / "per_image.npz").is_file()]
        if dirs:
            out[model] = dirs[0]
    return out


def find_explore(dirs: list[Path]) -> dict | None:
    """The first ``viz/explore.json`` under ``dirs`` (a grid's drawn model), or None."""
    for folder in dirs:
        for path in sorted(Path(folder).rglob("viz/explore.json")):
            explore = json.loads(path.read_text())
            add_image_indices(explore, path.parent / "fields.json")
            return explore
    return None


def add_image_indices(explore: dict, fields_json: Path) -> None:
    """Give each top-9 patch of ``explore`` that has no test-image ``index`` (an explore.json written before patches
    carried it) the index from the ``top_units`` of the ``fields.json`` beside it (same keys, channels and ranks)."""
    if not fields_json.is_file():
        return
    top = json.loads(fields_json.read_text()).get("top_units", {})
    for key, entry in explore["units"]["keys"].items():
        for row, channel in enumerate(entry["channels"]):
            for rank, patch in enumerate(channel["patches"]):
                if "index" not in patch and key in top:
                    patch["index"] = top[key]["image_index"][row][rank]


def explorer_data(results: Results, dirs: list[Path], title: str, count: int = 3) -> dict | None:
    """The explorer's data dict, or None when no model has label maps."""
    found = run_dirs(results)
    models = [model for model in model_rows(results) if model in found]
    if not models:
        return None
    maps = {model: read_label_maps(found[model] / "label_maps.npz") for model in models}
    # the in-plane pixel size: a volume is shown slice by slice (below), distances drawn within each slice
    spacing = {model: read_spacing(found[model] / "label_maps.npz")[-2:] for model in models}
    values = {model: read_per_image(found[model] / "per_image.npz")["model"] for model in models}
    available = min(len(m) for m in maps.values())
    deepest = max(model.depth for model in models)
    reference = next((m for m in models if m.depth == deepest and m.skips == "none"), models[-1])
    hd95 = image_values(values[reference], "hd95")[:available]
    # Images where the reference model misses an object (or adds one) score the image diagonal: they show a loss, not
    # a misplaced boundary, so they are chosen only when no other image is left.
    missed = image_values(values[reference], "empty_rate")[:available] > 0
    candidates = np.flatnonzero(~missed) if not missed.all() else np.arange(available)
    order = candidates[np.argsort(hd95[candidates], kind="stable")]  # test indices by the reference's hd95
    middle = int(order[len(order) // 2])
    chosen = [("errs most", int(order[-1])), ("errs least", int(order[0])), ("median case", middle)]
    picked: list[tuple[str, int]] = []
    for why, index in chosen[:count]:
        if index not in [i for _, i in picked]:
            picked.append((why, index))
    # One entry per image; a volume gives one entry per slice (the explorer's slider over z), every model at the same
    # slice, and the page opens each volume at the reference model's slice of worst error.
    views: list[tuple[str, int, int | None]] = []  # (why, test index, slice or None)
    volumes: dict[int, dict] = {}  # test volume -> its depth, worst slice and the range of slices in the page
    per_volume = slices_shown(maps, picked)
    for why, index in picked:
        truth = maps[reference][index]["truth"]
        if truth.ndim != 3:
            views.append((why, index, None))
            continue
        depth, worst = truth.shape[0], worst_slice(maps[reference][index])
        low = min(max(0, worst - per_volume // 2), depth - min(per_volume, depth))
        volumes[index] = {"slices": depth, "worst_slice": worst, "slice_range": [low, low + min(per_volume, depth) - 1]}
        views += [(why, index, z) for z in range(low, low + min(per_volume, depth))]
    planes = {
        model: [maps[model][index] if z is None else {s: a[z] for s, a in maps[model][index].items()}
                for _, index, z in views]
        for model in models
    }  # fmt: skip
    first = planes[reference]
    num_classes = int(max(int(m[i]["truth"][m[i]["truth"] != IGNORE_INDEX].max(initial=0)) for m in maps.values()
                          for i in range(available))) + 1  # fmt: skip
    num_classes = max(num_classes, 2)
    images = []
    for (why, index, z), plane in zip(views, first, strict=True):
        where = ""
        if z is not None:
            worst = volumes[index]["worst_slice"]
            where = f"; slice {z} of 0–{volumes[index]['slices'] - 1}, " + (
                "where it errs most" if z == worst else f"it errs most at slice {worst}"
            )
        entry = {
            "index": index,
            "why": f"{reference.described[0].upper()}{reference.described[1:]} {why} (hd95 {hd95[index]:.2f} "
            f"{results.unit}{where})",
            "png": encode_png(plane["image"]),
            "truth": encode_labels(plane["truth"]),
        }
        if z is not None:
            entry.update({"slice": z, **volumes[index]})
        images.append(entry)
    entries = []
    for model in models:
        model_hd95, model_assd = image_values(values[model], "hd95"), image_values(values[model], "assd")
        probe_keys = [key for s in maps[model][0] if (key := sources.probe_key(s))]
        probe_keys.sort(key=lambda k: (k.startswith("dec"), -level_of(k) if k.startswith("dec") else level_of(k)))
        predictions = []
        for (_, index, _), plane in zip(views, planes[model], strict=True):
            pred_boundary, truth_boundary = boundaries(plane["model"], plane["truth"], num_classes, spacing[model])
            predictions.append({
                "labels": encode_labels(plane["model"]),
                "hd95": float(model_hd95[index]),
                "assd": float(model_assd[index]),
                "pred_boundary": pred_boundary,
                "truth_boundary": truth_boundary,
            })  # fmt: skip
        run = found[model]
        entries.append({
            "id": f"d{model.depth}-s{model.skips}",
            "label": model.described.removeprefix("the "),
            "depth": model.depth,
            "skips": [] if model.skips == "none" else [int(s) for s in model.skips.split(",")],
            "run": run.name,
            "predictions": predictions,
            "probe_keys": probe_keys,
            "probes": {key: [encode_labels(plane[sources.probe(key)]) for plane in planes[model]]
                       for key in probe_keys},
        })  # fmt: skip
    levels = sorted({level for s in first[0] if (level := sources.floor_level(s)) is not None})
    floors = {str(level): [encode_labels(plane[sources.floor(level)]) for plane in first] for level in levels}
    keys = {key for entry in entries for key in entry["probe_keys"]}
    explore = find_explore(dirs)
    fields = units = None
    if explore is not None:
        fields = {"model": explore["model"], "keys": explore["fields"]}
        units = {"model": explore["model"], **explore["units"]} if explore["units"]["keys"] else None
    height, width = first[0]["truth"].shape
    return {
        "title": title,
        "unit": results.unit,  # of hd95, assd and the boundary distances; optional in the schema (default px)
        "image_size": [int(height), int(width)],
        "classes": ["background", *(f"class {k}" for k in range(1, num_classes))],
        "images": images,
        "models": entries,
        "key_levels": {key: level_of(key) for key in sorted(keys)},
        "floors": floors,
        "fields": fields,
        "units": units,
        "learner": learner_data(results),  # optional in the schema: the field table and paragraphs, or None
    }
