"""The report's pictures of what the numbers mean, drawn from the explorer's data (``explorer_data.py``): the chosen
test images as every model segments them, and one image as every probe of a model reads it, beside the floors."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from unetlab.conventions import IGNORE_INDEX
from unetlab.encode import decode_labels

CMAP = matplotlib.colormaps["RdYlGn_r"]
MAX_DISTANCE = 8.0  # px: the colour scale of boundary distances saturates here
FOREGROUND = np.array([0.12, 0.47, 0.71])


def _png(text: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def _short(model: dict) -> str:
    skips = "all" if model["skips"] == list(range(model["depth"])) else ",".join(map(str, model["skips"])) or "none"
    return f"d{model['depth']}, skips {skips}"


def _truth_edges(truth: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a foreground class with a 4-neighbour of another label."""
    edges = np.zeros(truth.shape, dtype=bool)
    edges[:-1] |= truth[:-1] != truth[1:]
    edges[1:] |= truth[1:] != truth[:-1]
    edges[:, :-1] |= truth[:, :-1] != truth[:, 1:]
    edges[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    return edges & (truth > 0) & (truth != IGNORE_INDEX)


def predictions_figure(data: dict, path: Path) -> Path:
    """Rows: the chosen test images; columns: every model. Each panel: the image dimmed, the truth boundary in white
    and the predicted boundary pixels coloured by their distance to the truth boundary (0 to >= 8 px)."""
    images, models = data["images"], data["models"]
    size = tuple(data["image_size"])
    unit = data.get("unit", "px")
    within = ", within the slice" if "slice" in images[0]["why"] else ""
    cell, head, foot = 1.25, 0.6, 0.75  # inches
    height = head + foot + cell * 1.3 * len(images)
    figure = Figure(figsize=(0.6 + cell * len(models), height))
    axes = figure.subplots(len(images), len(models), squeeze=False)
    for r, image in enumerate(images):
        picture = _png(image["png"]).astype(float) / 255 * 0.55
        truth = decode_labels(image["truth"], size)
        for c, model in enumerate(models):
            prediction = model["predictions"][r]
            rgb = picture.copy()
            rgb[_truth_edges(truth)] = 1.0
            for y, x, d in prediction["pred_boundary"]:
                rgb[y, x] = CMAP(min(d if d >= 0 else MAX_DISTANCE, MAX_DISTANCE) / MAX_DISTANCE)[:3]
            ax = axes[r][c]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{_short(model)}\nhd95 {prediction['hd95']:.1f} {unit}", fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(f"test image {image['index']}", fontsize=7)
    scale = figure.add_axes((0.3, 0.45 / height, 0.4, 0.1 / height))
    scale.imshow(np.linspace(0, 1, 256)[None], cmap=CMAP, aspect="auto", extent=(0, MAX_DISTANCE, 0, 1))
    scale.set_yticks([])
    scale.set_xlabel(
        f"predicted boundary pixel: distance to the truth boundary ({unit}{within}); white: truth boundary", fontsize=7
    )
    scale.tick_params(labelsize=6)
    figure.subplots_adjust(left=0.04, right=0.99, top=1 - head / height, bottom=foot / height, wspace=0.08,
                           hspace=0.35)  # fmt: skip
    figure.suptitle("The chosen test images as every model segments them", fontsize=9, y=1 - 0.12 / height, va="top")
    figure.savefig(path, dpi=110)
    return path


def probe_maps_figure(data: dict, path: Path, image: int = -1) -> Path | None:
    """One test image (default the last chosen: the median case) as every probe reads it, for the deepest all-skip
    and the deepest no-skip model, under the floor of each key's level; truth boundary in black."""
    models = data["models"]
    deepest = max(model["depth"] for model in models)
    rows = [m for m in models if m["depth"] == deepest and m["skips"] in (list(range(deepest)), [])]
    keys = rows[0]["probe_keys"] if rows else []
    if not keys:  # no such model, or evaluated without probes (eval.probes=false)
        return None
    size = tuple(data["image_size"])
    truth = decode_labels(data["images"][image]["truth"], size)
    edges = _truth_edges(truth)
    figure = Figure(figsize=(0.8 + 1.1 * len(keys), 0.8 + 1.25 * (len(rows) + 1)))
    axes = figure.subplots(len(rows) + 1, len(keys), squeeze=False)
    for c, key in enumerate(keys):
        level = data["key_levels"][key]
        panels = [("floor", data["floors"][str(level)][image])]
        panels += [(_short(model), model["probes"][key][image]) for model in rows]
        for r, (name, labels) in enumerate(panels):
            mask = decode_labels(labels, size)
            rgb = np.ones((*size, 3)) * 0.93
            rgb[(mask > 0) & (mask != IGNORE_INDEX)] = FOREGROUND
            rgb[edges] = 0.0
            ax = axes[r][c]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{key} (level {level})", fontsize=7)
            if c == 0:
                ax.set_ylabel(name if r else "floor of\nthe level", fontsize=7)
    figure.suptitle(
        f"Test image {data['images'][image]['index']} as each layer's probe reads it (blue), under the best map the "
        "layer's resolution allows (top)",
        fontsize=8,
    )
    figure.subplots_adjust(left=0.07, right=0.99, top=0.86, bottom=0.02, wspace=0.06, hspace=0.12)
    figure.savefig(path, dpi=110)
    return path
