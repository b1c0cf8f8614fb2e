"""The validation pass that runs in ``setup()`` before any training: every problem is a ``DataError`` naming the file.

Per file it reads what is cheap and needed: an image's header (size, channels; Pillow opens lazily) plus a
completeness check, a mask's full decode (its labels). These per-file facts are cached in
``$XDG_CACHE_HOME/unetlab`` (else ``~/.cache/unetlab``), one JSON file per data set kind and root path, each
entry keyed by the file's path and stamped with its mtime (ns) and size: a second run re-reads only files that
changed. The checks across files (pairing, sizes, labels, batching) are redone from the facts every run.
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

from unetlab.data.io import DataError, image_header, mask_labels

CACHE_VERSION = 1


class Sample(NamedTuple):
    """One image and its mask."""

    image: Path
    mask: Path


class SampleInfo(NamedTuple):
    """What the validation pass learnt about a sample: sizes, channels, and the mask's raw labels."""

    height: int
    width: int
    channels: int
    mask_height: int
    mask_width: int
    labels: list[int]


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


def scan_samples(
    samples: Sequence[Sample], cache: ScanCache, read_mask: Callable[[Path], np.ndarray], mask_kind: str
) -> list[SampleInfo]:
    """Header of every image, labels of every mask (from ``cache`` where unchanged)."""

    def scan_mask(path: Path) -> dict:
        mask = read_mask(path)
        return {"height": int(mask.shape[0]), "width": int(mask.shape[1]), "labels": mask_labels(mask)}

    infos = []
    for sample in samples:
        image = cache.get(sample.image, "image", image_header)
        mask = cache.get(sample.mask, f"mask-{mask_kind}", scan_mask)
        infos.append(
            SampleInfo(
                image["height"], image["width"], image["channels"], mask["height"], mask["width"], mask["labels"]
            )
        )
    return infos


def check_sizes(samples: Sequence[Sample], infos: Sequence[SampleInfo]) -> None:
    """Every mask has its image's size."""
    for sample, info in zip(samples, infos, strict=True):
        if (info.height, info.width) != (info.mask_height, info.mask_width):
            raise DataError(
                f"{sample.mask}: mask is {info.mask_height}x{info.mask_width} (HxW) but its image "
                f"{sample.image} is {info.height}x{info.width}; a mask must have its image's size"
            )


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

    def padded(info: SampleInfo) -> tuple[int, int]:
        return -(-info.height // multiple) * multiple, -(-info.width // multiple) * multiple

    first = (infos[0].height, infos[0].width)
    for sample, info in zip(samples, infos, strict=True):
        if padded(info) != padded(infos[0]):
            raise DataError(
                f"data.image_size=null keeps each image's native size, but the {split} split mixes sizes: "
                f"{samples[0].image} is {first[0]}x{first[1]} and {sample.image} is {info.height}x{info.width} "
                f"(HxW); set data.image_size (e.g. data.image_size=256) or data.batch_size=1"
            )
