"""The pictures of ``unetlab-viz`` and their captions in the ablation report; ``erf`` and ``topk`` compute, this
module draws.

Each picture has a function that returns its matplotlib ``Figure`` (what is drawn can be read back from it) and one
that writes it as a PNG and returns the path:
- ``fields_figure`` / ``plot_fields``: theoretical field side against the effective ones, per feature key;
- ``erf_maps_figure`` / ``plot_erf_maps``: the ERF heat maps with the theoretical box and the 50% / 95% squares;
- ``grid_figure`` / ``save_grid``: the top-k patches of some channels, ground-truth boundary on top.
``report_pictures`` gives the report's title and caption of each PNG.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.colors
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from unetlab.erf import ERF
from unetlab.explain.topk import Patch, TopUnits, top_patches
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import RF, centre, receptive_fields

OUTSIDE_IMAGE = "#8fa7bf"  # padding where a field leaves the image
BOUNDARY_COLOURS = ("#39ff14", "#ff9f1c", "#00e5ff", "#ff3ea5", "#ffe600")
LABEL_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def fields_figure(erfs_by_label: dict[str, dict[str, ERF]], image_size: tuple[int, ...], title: str) -> Figure:
    """Theoretical field side vs effective (2r+1 for 50% and 95% of the gradient mass) per feature key, one pair of
    lines per label (e.g. trained, random init); the image side as a horizontal line."""
    first = next(iter(erfs_by_label.values()))
    keys = list(first)
    positions = range(len(keys))
    figure = Figure(figsize=(max(6.0, 0.6 * len(keys) + 1.5) + 3.0, 4.5), layout="constrained")
    ax = figure.add_subplot()
    ax.plot(positions, [first[key].theoretical.size for key in keys], "k-o", lw=2, label="theoretical (largest)")
    for colour, (label, erfs) in zip(LABEL_COLOURS, erfs_by_label.items(), strict=False):
        ax.plot(positions, [erfs[key].size95 for key in keys], "-s", color=colour, label=f"effective 95%, {label}")
        ax.plot(positions, [erfs[key].size50 for key in keys], "--^", color=colour, label=f"effective 50%, {label}")
    if len(image_size) == 2:
        side, label = max(image_size), f"image side ({max(image_size)} px): ERFs clip here"
    else:  # a volume's ERF is a cube: the shortest side clips it first
        side, label = min(image_size), f"shortest volume side ({min(image_size)} voxels): ERFs clip here"
    ax.axhline(side, color="grey", ls=":", lw=1, label=label)
    ax.set_yscale("log", base=2)
    ax.set_xticks(list(positions), keys)
    ax.set_xlabel("feature key (forward order)")
    ax.set_ylabel("field side (px, log scale)")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def plot_fields(erfs_by_label: dict[str, dict[str, ERF]], image_size: tuple[int, ...], path: Path, title: str) -> Path:
    """``fields_figure`` as a PNG at ``path``."""
    fields_figure(erfs_by_label, image_size, title).savefig(path, dpi=110)
    return path


def erf_maps_figure(erfs_by_label: dict[str, dict[str, ERF]], title: str) -> Figure:
    """Heat maps of the mean |gradient| (each scaled to its maximum), one row per label, one column per key;
    theoretical box dashed, 95% square solid, 50% square dotted; a colour bar on the right."""
    labels = list(erfs_by_label)
    keys = list(erfs_by_label[labels[0]])
    # Fixed margins in inches (a constrained layout of many panels costs seconds); the colour bar sits on the right.
    cell, gap_w, gap_h, left, right, top, bottom = 1.7, 0.35, 0.75, 0.75, 1.3, 1.05, 0.45
    width = left + right + len(keys) * (cell + gap_w) - gap_w
    height = top + bottom + len(labels) * (cell + gap_h) - gap_h
    figure = Figure(figsize=(width, height))
    grid = dict(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    axes = figure.subplots(
        len(labels), len(keys), squeeze=False, gridspec_kw={**grid, "wspace": gap_w / cell, "hspace": gap_h / cell}
    )
    image = None
    for row, label in enumerate(labels):
        for col, key in enumerate(keys):
            erf, ax = erfs_by_label[label][key], axes[row][col]
            rows, cols = erf.grad_map.shape
            peak = float(erf.grad_map.max())
            normalised = (erf.grad_map / peak if peak > 0 else erf.grad_map).numpy()
            image = ax.imshow(normalised, cmap="magma", vmin=0, vmax=1, extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
            y0, y1, x0, x1 = erf.box
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", ls="--", lw=1))
            for radius, style in ((erf.radius95, "-"), (erf.radius50, ":")):
                corner = (erf.centre[1] - radius - 0.5, erf.centre[0] - radius - 0.5)
                ax.add_patch(Rectangle(corner, 2 * radius + 1, 2 * radius + 1, fill=False, ec="white", ls=style, lw=1))
            ax.set_xlim(-0.5, cols - 0.5)
            ax.set_ylim(rows - 0.5, -0.5)
            ax.set_title(
                f"{key} ({erf.theoretical.size} px)\nr50 {erf.radius50:g}, r95 {erf.radius95:g} px", fontsize=8
            )
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel(f"{label}\ny (px)", fontsize=8)
            if row == len(labels) - 1:
                ax.set_xlabel("x (px)", fontsize=8)
    colour_axes = figure.add_axes((1 - 1.05 / width, bottom / height, 0.12 / width, 1 - (top + bottom) / height))
    figure.colorbar(image, cax=colour_axes, label="mean |∂unit/∂input| / max")
    figure.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return figure


def plot_erf_maps(erfs_by_label: dict[str, dict[str, ERF]], path: Path, title: str) -> Path:
    """``erf_maps_figure`` as a PNG at ``path``."""
    erf_maps_figure(erfs_by_label, title).savefig(path, dpi=100)
    return path


def grid_figure(top: TopUnits, rows: list[list[Patch]], rf: RF, num_classes: int) -> Figure:
    """One row per channel of ``top``, its k patches (``rows``, from ``top_patches``) with the ground-truth boundary
    of classes 1..num_classes-1 drawn on each. Patches sit on a common px scale: each panel spans the key's largest
    field ``rf.size``, centred on the patch."""
    images = _to_rgb([patch.image for patches in rows for patch in patches])
    k = len(rows[0])
    # Fixed margins in inches (a constrained layout of many panels costs seconds).
    cell, gap_w, gap_h, left, right, head, bottom = 1.2, 0.1, 0.3, 0.35, 0.1, 0.7, 0.1
    width, height = left + right + k * cell + (k - 1) * gap_w, head + bottom + len(rows) * (cell + gap_h) - gap_h
    figure = Figure(figsize=(width, height))
    grid = dict(left=left / width, right=1 - right / width, top=1 - head / height, bottom=bottom / height)
    axes = figure.subplots(
        len(rows), k, squeeze=False, gridspec_kw={**grid, "wspace": gap_w / cell, "hspace": gap_h / cell}
    )
    for r, patches in enumerate(rows):
        for c, patch in enumerate(patches):
            ax = axes[r][c]
            y0, y1, x0, x1 = patch.box
            ax.imshow(images[r * k + c], extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5), interpolation="nearest")
            _draw_boundaries(ax, patch, num_classes)
            cy, cx = centre(patch.box)
            ax.set_xlim(cx - rf.size / 2, cx + rf.size / 2)
            ax.set_ylim(cy + rf.size / 2, cy - rf.size / 2)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{patch.value:.3g} (img {patch.image_index})", fontsize=6, pad=2)
            if c == 0:
                ax.set_ylabel(f"channel {top.channels[r]}", fontsize=8)
    figure.suptitle(
        f"{top.key}: top-{k} patches per channel, each the unit's receptive field ({rf.size} px side, "
        f"units {rf.jump:g} px apart)\nlines: ground-truth boundary; blue-grey: outside the image; "
        "title: activation (image index)",
        fontsize=8,
        y=1 - 0.1 / height,
        va="top",
    )
    return figure


def save_grid(net: UNetLike, dataset, top: TopUnits, path: Path, num_classes: int | None = None) -> Path:
    """Crop the patches of ``top`` from ``dataset`` (items ``(image, mask, ...)``) and write ``grid_figure`` as a PNG
    at ``path``; ``num_classes`` defaults to the network's."""
    rows = top_patches(net, dataset, top)
    rf = receptive_fields(net)[top.key]
    grid_figure(top, rows, rf, num_classes or net.num_classes).savefig(path, dpi=100)
    return path


def _to_rgb(images: list[Tensor]) -> list[np.ndarray]:
    """(C, h, w) patches -> (h, w, 3) in [0, 1], one scale for all (the data range), padding in OUTSIDE_IMAGE."""
    finite = torch.cat([image[torch.isfinite(image)] for image in images])
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    pad = torch.tensor(matplotlib.colors.to_rgb(OUTSIDE_IMAGE)).view(3, 1, 1)
    out = []
    for image in images:
        rgb = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
        rgb = ((rgb - low) / max(high - low, 1e-12)).clamp(0, 1)
        rgb = torch.where(torch.isfinite(rgb), rgb, pad)
        out.append(rgb.permute(1, 2, 0).numpy())
    return out


def _draw_boundaries(ax: Axes, patch: Patch, num_classes: int) -> None:
    """Pixel edges between each foreground class and the rest, inside the image (edges with the padding are
    left out: the image border is not an object boundary), one LineCollection per class present."""
    y0, _, x0, _ = patch.box
    mask = patch.mask.numpy()
    for label in range(1, num_classes):
        inside = mask == label
        if not inside.any():
            continue
        in_image = mask >= 0
        segments = []
        # Horizontal edges: between rows r and r + 1; vertical edges: between columns c and c + 1.
        rows, cols = np.nonzero((inside[:-1] != inside[1:]) & in_image[:-1] & in_image[1:])
        segments += [
            ((x0 + c - 0.5, y0 + r + 0.5), (x0 + c + 0.5, y0 + r + 0.5)) for r, c in zip(rows, cols, strict=True)
        ]
        rows, cols = np.nonzero((inside[:, :-1] != inside[:, 1:]) & in_image[:, :-1] & in_image[:, 1:])
        segments += [
            ((x0 + c + 0.5, y0 + r - 0.5), (x0 + c + 0.5, y0 + r + 0.5)) for r, c in zip(rows, cols, strict=True)
        ]
        colour = BOUNDARY_COLOURS[(label - 1) % len(BOUNDARY_COLOURS)]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=0.9))


def report_pictures(paths: Mapping[str, Path], model: str, keys: Sequence[str]) -> list[tuple[str, str, Path]]:
    """The ``unetlab-viz`` PNGs of one model (``paths`` as ``run_viz`` returns them) as report pictures
    ``(title, caption, path)``: the fields, the ERF maps, then the top-9 grid of each of ``keys`` that was drawn
    (its caption gives the key's field from ``paths["json"]``, the ``fields.json`` of ``run_viz``, when given).
    ``model`` names the model in the captions (e.g. "the depth-4 all-skip model (d4-s0,1,2,3-seed0)")."""
    pictures = [
        (
            "Receptive fields by feature key",
            f"Theoretical receptive field of every feature key of {model}, against the effective field (the radius "
            "holding 50 % / 95 % of the input-gradient mass of the centre unit), trained and at random init.",
            paths["fields"],
        ),
        (
            "Effective receptive fields",
            f"Mean absolute input gradient of the centre unit of {model}.",
            paths["erf_maps"],
        ),
    ]
    fields = json.loads(Path(paths["json"]).read_text())["fields"] if "json" in paths else {}
    for key in keys:
        name = f"top9_{key}"
        if name in paths:
            size = (
                f" ({fields[key]['size']} px at {key}, its units {fields[key]['jump']:g} px apart)"
                if key in fields
                else ""
            )
            pictures.append(
                (
                    f"Top-9 patches of {key}",
                    f"Each row: the nine test images where one channel of {key} fires most (Zeiler and Fergus 2014), "
                    f"each cut to the field of the unit where it fires{size}, with the ground-truth boundary drawn "
                    "and the activation and test-image index above it. That is why a layer-1 unit shows nine small "
                    "patches and a deep unit nine large ones: each patch is all that its unit can see.",
                    paths[name],
                )
            )
    return pictures
