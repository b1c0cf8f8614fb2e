"""``label_maps.npz`` beside a run's ``results.csv``: the label maps behind the pictures of the report and the explorer.

For the first ``eval.picture_images`` test images (in the test split's order), the argmax label map of every source
that predicts one: ``model`` (the trained network), ``probe/<key>`` (each depth probe, upsampled as it is scored),
``floor/<level>`` (the resolution floor of each level), ``truth`` (the ground truth, 255 = ignored), and ``image``
(the input as (H, W, 3) uint8 RGB, for display). The report
picks its images from these by the per-image values of ``per_image.npz``, whose first rows are the same images; it
reads only files, never a model.

Stored as ``<i>/<source>`` -> (H, W) uint8 ((H, W, 3) for ``image``), one array per image so that images of
different sizes (file data sets at their native size) fit; ``index`` -> (N,) the test indices; ``spacing`` -> (2,)
the pixel size ``(sy, sx)`` the run's distances are measured in. Volumes: (D, H, W) maps, (D, H, W, 3) images and a
voxel size ``(sz, sy, sx)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from unetlab.atomic import write_npz
from unetlab.conventions import IGNORE_INDEX
from unetlab.encode import to_uint8_rgb


class LabelMapRecorder:
    """Collects (B, H, W) label batches per source, in test order, up to ``limit`` images per source."""

    def __init__(self, limit: int, spacing: tuple[float, ...] = (1.0, 1.0)):
        self.limit = limit
        self.spacing = spacing  # the pixel size (sy, sx) of the maps, written beside them; (sz, sy, sx) for volumes
        self.maps: dict[str, list[np.ndarray]] = {}

    def add_images(self, images: Tensor) -> None:
        """Append a batch of input images (B, C, H, W) as ``image`` (H, W, 3) uint8, each on its own range (volumes:
        (B, C, D, H, W) as (D, H, W, 3))."""
        maps = self.maps.setdefault("image", [])
        for image in images[: self.limit - len(maps)]:
            maps.append(to_uint8_rgb(image.float().cpu().numpy()))

    def add(self, source: str, labels: Tensor) -> None:
        """Append the label maps of one batch (B, H, W), integer classes (255 = ignored) or a slice of them."""
        maps = self.maps.setdefault(source, [])
        room = self.limit - len(maps)
        if room > 0:
            maps.extend(labels[:room].to("cpu").numpy().astype(np.uint8))

    def write(self, path: Path) -> None:
        """``label_maps.npz`` (atomically); nothing when no image was recorded."""
        count = min((len(maps) for maps in self.maps.values()), default=0)
        if count == 0:
            return
        arrays = {f"{i}/{source}": maps[i] for source, maps in self.maps.items() for i in range(count)}
        arrays["index"] = np.arange(count)
        arrays["spacing"] = np.asarray(self.spacing, dtype=np.float64)
        write_npz(path, arrays)


def read_spacing(path: Path) -> tuple[float, ...]:
    """The pixel size ``(sy, sx)`` (voxel size ``(sz, sy, sx)``) the label maps were scored with (``(1, 1)`` for
    files written before it was)."""
    with np.load(path) as data:
        return tuple(float(v) for v in data["spacing"]) if "spacing" in data.files else (1.0, 1.0)


def read_label_maps(path: Path) -> list[dict[str, np.ndarray]]:
    """The inverse of ``LabelMapRecorder.write``: per image (test order), source -> (H, W) uint8 (volumes: (D, H, W),
    shown by the report at one slice, ``worst_slice``)."""
    with np.load(path) as data:
        images: list[dict[str, np.ndarray]] = [{} for _ in data["index"]]
        for key in data.files:
            if key not in ("index", "spacing"):
                i, source = key.split("/", 1)
                images[int(i)][source] = data[key]
    return images


def worst_slice(maps: dict[str, np.ndarray]) -> int:
    """The slice (along D) of a volume's maps (source -> (D, H, W)) where the model's label differs from the truth at
    the most voxels (ignored voxels aside; the first such slice on a tie; the slice with the most foreground where the
    model makes no error): the slice of a volume that the report and the explorer show."""
    truth = maps["truth"]
    valid = truth != IGNORE_INDEX
    wrong = ((maps.get("model", truth) != truth) & valid).sum(axis=(1, 2))
    if wrong.any():
        return int(np.argmax(wrong))
    return int(np.argmax(((truth > 0) & valid).sum(axis=(1, 2))))
