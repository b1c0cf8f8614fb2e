"""The validation pass that runs in ``setup()`` before any training: every problem is a ``DataError`` naming the file.

Per file it reads what is cheap and needed: an image's header (size, channels; Pillow opens lazily) plus a
completeness check, a mask's full decode (its labels), and for NIfTI files the voxel size the header states. A
sample is a volume when its mask is one (a NIfTI file or a 3-D TIFF); its image is then read as a volume. These
per-file facts are cached in ``$XDG_CACHE_HOME/unetlab`` (else ``~/.cache/unetlab``), one JSON file per data set
kind and root path, each entry keyed by the file's path and stamped with its mtime (ns) and size: a second run
re-reads only files that changed. The checks across files (pairing, sizes, one kind of data, labels, batching,
voxel sizes) are redone from the facts every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unetlab.data.io import DataError, image_header, is_nifti, mask_labels, nifti_voxel

CACHE_VERSION = 1


class Sample(NamedTuple):
    """One image and its mask."""

    image: Path
    mask: Path


class Voxel(NamedTuple):
    """What a NIfTI header says of its voxel grid: size (sz, sy, sx) in ``unit`` (``mm``, ``um``, ``m`` or
    ``unknown``), and the world directions of the stored x, y, z axes (``RAS``; empty when it states none)."""

    spacing: tuple[float, float, float]
    unit: str
    axes: str


class SampleInfo(NamedTuple):
    """What the validation pass learnt about a sample: sizes, channels, the mask's raw labels; for volumes the
    depths, and the voxel grids that NIfTI headers state (None for other files)."""

    height: int
    width: int
    channels: int
    mask_height: int
    mask_width: int
    labels: list[int]
    depth: int | None = None  # None: a 2-D image
    mask_depth: int | None = None
    voxel: Voxel | None = None
    mask_voxel: Voxel | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The image's (H, W), or (D, H, W) for a volume."""
        sides = (self.height, self.width)
        return sides if self.depth is None else (self.depth, *sides)

    @property
    def mask_shape(self) -> tuple[int, ...]:
        sides = (self.mask_height, self.mask_width)
        return sides if self.mask_depth is None else (self.mask_depth, *sides)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unetlab"


class ScanCache:
    """Per-file facts keyed by path, valid while the file's mtime and size are unchanged.

    Args:
        kind: the data set kind (``folder``, ``pets``, ``voc``): different kinds decode masks differently.
        root: the data set root; one cache file per (kind, resolved root).
    """

    def __init__(self, kind: str, root: Path):
        self.root = Path(root).resolve()
        self.root_abs = os.path.abspath(root)  # entries are keyed by path relative to the root as given
        digest = hashlib.sha256(f"{kind}\0{self.root}".encode()).hexdigest()[:16]
        self.path = cache_dir() / f"validate-{kind}-{digest}.json"
        self.entries: dict[str, dict] = {}
        self.hits = 0
        self.misses = 0
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == CACHE_VERSION and data.get("root") == str(self.root):
                self.entries = data["entries"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # no cache yet, or an unreadable one: start afresh

    def get(self, path: Path, what: str, compute: Callable[[Path], dict]) -> dict:
        """``compute(path)``, or its cached result when ``path`` has not changed since."""
        try:
            stat = path.stat()
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
        key = f"{what}:{os.path.relpath(os.path.abspath(path), self.root_abs)}"
        stamp = [stat.st_mtime_ns, stat.st_size]
        entry = self.entries.get(key)
        if entry is not None and entry.get("stamp") == stamp:
            self.hits += 1
            return entry["info"]
        self.misses += 1
        info = compute(path)
        self.entries[key] = {"stamp": stamp, "info": info}
        return info

    def save(self) -> None:
        """Write atomically (concurrent runs each replace the file whole); a read-only cache only warns."""
        if self.misses == 0:
            return
        data = {"version": CACHE_VERSION, "root": str(self.root), "entries": self.entries}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError as err:
            print(f"[unetlab] warning: cannot write the data validation cache {self.path}: {err}", file=sys.stderr)


def _voxel(facts: dict) -> Voxel | None:
    found = facts.get("voxel")
    return None if found is None else Voxel(tuple(found["spacing"]), found["unit"], found["axes"])


def scan_samples(
    samples: Sequence[Sample], cache: ScanCache, read_mask: Callable[[Path], np.ndarray], mask_kind: str
) -> list[SampleInfo]:
    """Labels of every mask, then the header of its image, read as a volume when the mask is one (from ``cache``
    where unchanged)."""

    def scan_mask(path: Path) -> dict:
        mask = read_mask(path)
        facts = {"height": int(mask.shape[-2]), "width": int(mask.shape[-1]), "labels": mask_labels(mask)}
        if mask.ndim == 3:
            facts["depth"] = int(mask.shape[0])
        if is_nifti(path):
            facts["voxel"] = nifti_voxel(path)
        return facts

    infos = []
    for sample in samples:
        mask = cache.get(sample.mask, f"mask-{mask_kind}", scan_mask)
        if "depth" in mask:  # a TIFF stack's header reads differently as a volume: its own cache entry
            image = cache.get(sample.image, "volume", lambda path: image_header(path, volume=True))
        else:
            image = cache.get(sample.image, "image", image_header)
        sizes = (image["height"], image["width"], image["channels"], mask["height"], mask["width"])
        depths = (image.get("depth"), mask.get("depth"))
        infos.append(SampleInfo(*sizes, mask["labels"], *depths, _voxel(image), _voxel(mask)))
    return infos


def size_text(shape: Sequence[int]) -> str:
    """``40x48`` for (H, W), ``5x40x48`` for (D, H, W)."""
    return "x".join(str(n) for n in shape)


def axes_text(shape: Sequence[int]) -> str:
    return "HxW" if len(shape) == 2 else "DxHxW"


def check_sizes(samples: Sequence[Sample], infos: Sequence[SampleInfo]) -> None:
    """Every mask has its image's size (and both are images, or both volumes)."""
    for sample, info in zip(samples, infos, strict=True):
        if info.shape != info.mask_shape:
            image_axes = f" ({axes_text(info.shape)})" if len(info.shape) != len(info.mask_shape) else ""
            raise DataError(
                f"{sample.mask}: mask is {size_text(info.mask_shape)} ({axes_text(info.mask_shape)}) but its image "
                f"{sample.image} is {size_text(info.shape)}{image_axes}; a mask must have its image's size"
            )


def check_one_kind(samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> int:
    """The data's ``spatial_dims``: 2 when every image is 2-D, 3 when every one is a volume; a mix is refused."""
    first: dict[int, Path] = {}
    for split, split_samples in samples.items():
        for sample, info in zip(split_samples, infos[split], strict=True):
            first.setdefault(len(info.shape), sample.image)
    if len(first) > 1:
        raise DataError(
            f"{first[3]} is a volume but {first[2]} is a 2-D image; a data set holds 2-D images or volumes, not both"
        )
    return next(iter(first))


def check_labels(
    samples: Sequence[Sample], infos: Sequence[SampleInfo], allowed: set[int], describe_allowed: str
) -> None:
    """Every mask value lies in ``allowed``; the message says what is allowed and why."""
    for sample, info in zip(samples, infos, strict=True):
        bad = [label for label in info.labels if label not in allowed]
        if bad:
            shown = ", ".join(str(label) for label in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise DataError(f"{sample.mask}: mask holds label(s) {shown} outside {describe_allowed}")


def check_batchable(
    split: str, samples: Sequence[Sample], infos: Sequence[SampleInfo], batch_size: int, multiple: int
) -> None:
    """With ``image_size=null`` each image keeps its size (padded up to a multiple of ``multiple``), so a batch
    needs images that pad to one size."""
    if batch_size == 1 or not infos:
        return

    def padded(info: SampleInfo) -> tuple[int, ...]:
        return tuple(-(-side // multiple) * multiple for side in info.shape)

    for sample, info in zip(samples, infos, strict=True):
        if padded(info) != padded(infos[0]):
            raise DataError(
                f"data.image_size=null keeps each image's native size, but the {split} split mixes sizes: "
                f"{samples[0].image} is {size_text(infos[0].shape)} and {sample.image} is {size_text(info.shape)} "
                f"({axes_text(info.shape)}); set data.image_size (e.g. data.image_size=256) or data.batch_size=1"
            )


def same_spacing(a: Sequence[float], b: Sequence[float], rtol: float = 1e-5) -> bool:
    """Equal per axis within a relative ``rtol`` (float32 headers round what was written)."""
    return len(a) == len(b) and all(abs(x - y) <= rtol * max(abs(x), abs(y)) for x, y in zip(a, b, strict=True))


def voxel_text(spacing: Sequence[float], unit: str) -> str:
    """``2.5 x 0.8 x 0.8 mm`` (sz x sy x sx)."""
    return " x ".join(f"{s:g}" for s in spacing) + (" (unit unknown)" if unit == "unknown" else f" {unit}")


def check_voxel_sizes(
    samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]
) -> tuple[Path, tuple[float, ...], str] | None:
    """The voxel size the NIfTI headers state, checked: each mask on its image's grid (size, unit, axes), one voxel size
    and one unit in the whole data set (the metrics take one). Returns (the first file stating it, its spacing, the
    first unit a header names, else ``unknown``), or None when no file states one (TIFF stacks). An ``unknown`` unit
    matches any."""
    first: tuple[Path, Voxel] | None = None
    first_unit: tuple[Path, str] | None = None
    for split, split_samples in samples.items():
        for sample, info in zip(split_samples, infos[split], strict=True):
            image, mask = info.voxel, info.mask_voxel
            if image is not None and mask is not None:
                units_differ = "unknown" not in (image.unit, mask.unit) and image.unit != mask.unit
                if not same_spacing(image.spacing, mask.spacing) or units_differ:
                    raise DataError(
                        f"{sample.mask}: voxel size {voxel_text(*mask[:2])} but its image {sample.image} has "
                        f"{voxel_text(*image[:2])} (sz x sy x sx); a mask must lie on its image's voxel grid"
                    )
                if image.axes and mask.axes and image.axes != mask.axes:
                    raise DataError(
                        f"{sample.mask}: its x, y, z axes point {mask.axes} but those of its image {sample.image} "
                        f"point {image.axes}; a mask must lie on its image's voxel grid (reorient one of them)"
                    )
            for path, voxel in ((sample.image, image), (sample.mask, mask)):
                if voxel is None:
                    continue
                first = first or (path, voxel)
                if not same_spacing(voxel.spacing, first[1].spacing):
                    raise DataError(
                        f"{path}: voxel size {voxel_text(*voxel[:2])} but {first[0]} has {voxel_text(*first[1][:2])} "
                        "(sz x sy x sx); the metrics take one voxel size per data set: resample to one spacing"
                    )
                if voxel.unit != "unknown":
                    first_unit = first_unit or (path, voxel.unit)
                    if voxel.unit != first_unit[1]:
                        raise DataError(
                            f"{path}: voxel size in {voxel.unit} but {first_unit[0]} states {first_unit[1]}; the "
                            "metrics take one unit per data set"
                        )
    if first is None:
        return None
    return first[0], first[1].spacing, first_unit[1] if first_unit else "unknown"
