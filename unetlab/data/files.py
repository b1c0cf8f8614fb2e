"""What the on-disk data sets (folder, pets, voc) share: a picklable file data set and a validating data module.

A subclass lists its samples per split (``list_samples``) and says which raw mask values are allowed; this
module validates everything in ``setup()`` (``unetlab.data.validate``) before a model is built, then serves
``(image (C, H, W) float32, mask (H, W) int64)`` pairs sized by ``unetlab.data.transforms.Geometry``; volumes
``(image (C, D, H, W), mask (D, H, W))``, with ``spatial_dims = 3`` and a voxel size ``(sz, sy, sx)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from unetlab.conventions import IGNORE_INDEX
from unetlab.data.io import NORMALIZE, DataError, read_image, read_mask, tiff_spacing
from unetlab.data.module import SPLITS, SegmentationDataModule, check_spacing
from unetlab.data.sampling import ItemKey, split_key
from unetlab.data.transforms import Geometry
from unetlab.data.validate import (
    Sample,
    SampleInfo,
    ScanCache,
    check_batchable,
    check_labels,
    check_one_kind,
    check_sizes,
    check_voxel_sizes,
    same_spacing,
    scan_samples,
    voxel_text,
)


class FileDataset(Dataset):
    """Samples read from disk on every access (no open handles, so it pickles into worker processes).

    Args:
        samples: (image path, mask path) pairs.
        channels: image channels served; one-channel images are repeated to this.
        normalize: intensity normalisation (``unetlab.data.io.normalize_image``).
        read_mask: path -> raw mask (H, W), or (D, H, W), of integers.
        label_lut: raw mask value -> label (a lookup table), or None when raw values are the labels.
        geometry: sizing and augmentation for this split.
        volume: read the images as volumes (C, D, H, W).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        channels: int,
        normalize: str,
        read_mask: Callable[[Path], np.ndarray],
        label_lut: np.ndarray | None,
        geometry: Geometry,
        volume: bool = False,
    ):
        self.samples = list(samples)
        self.channels = channels
        self.normalize = normalize
        self.read_mask = read_mask
        self.label_lut = label_lut
        self.geometry = geometry
        self.volume = volume

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: ItemKey) -> tuple[Tensor, Tensor]:
        index, generator = split_key(key)
        sample = self.samples[index]
        image = torch.from_numpy(read_image(sample.image, self.channels, self.normalize, self.volume))
        raw = self.read_mask(sample.mask)
        mask = torch.from_numpy((raw if self.label_lut is None else self.label_lut[raw]).astype(np.int64))
        if tuple(image.shape[1:]) != tuple(mask.shape):
            raise DataError(
                f"{sample.mask}: mask is {tuple(mask.shape)} but its image {sample.image} is "
                f"{tuple(image.shape[1:])} (changed since the validation pass?)"
            )
        return self.geometry(image, mask, generator)


class FileDataModule(SegmentationDataModule):
    """Base of the loaders that read a data set already on disk; validates it in ``setup()``.

    Args:
        root: the data set's folder (each subclass documents its layout).
        image_size: output side in px (a multiple of ``2**depth``); None keeps native sizes, padded at the
            bottom/right to a multiple of ``2**depth`` (then a batch needs one padded size, or batch_size 1).
        resize: ``resize`` (scale to image_size; images bilinear, masks nearest) or ``crop`` (random crop for
            training, centre crop for evaluation; smaller images padded, masks with 255 = ignore).
        augment: random flips and (square outputs) 90-degree rotations for training.
        normalize: ``auto`` (8-bit / 255, else per-image min-max) | ``range`` | ``minmax`` | ``zscore`` | ``none``.
        depth: the model's depth (``${model.depth}``); output sizes are multiples of ``2**depth``.
        train_size, val_size, test_size: use a seeded random subset of at most this many samples (None = all).
        split_seed: seed of those subsets and of any split carved out of another.
        batch_size, num_workers, pin_memory: DataLoader settings.
        order_seed: seeds the training order and augmentation (set by ``train`` to the run's ``seed``).
        spacing, unit: the pixel size (sy, sx), or for volumes the voxel size (sz, sy, sx), in ``unit``; checked
            against the files that state one (TIFF tags in 2-D, NIfTI headers).

    ``spatial_dims`` follows the files in ``setup()``: 3 when they are volumes (``docs/data.md``, Volumes).
    """

    kind = "files"  # names the validation cache file
    mask_kind = "index"  # how read_mask decodes; part of the cache key
    read_mask = staticmethod(read_mask)
    label_lut: np.ndarray | None = None
    layout = "see the data set's documentation"  # said in errors about the root

    def __init__(
        self,
        root: str | None,
        image_size: int | None = None,
        resize: str = "resize",
        augment: bool = True,
        normalize: str = "auto",
        depth: int = 4,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
        split_seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        order_seed: int = 0,
        spacing: Sequence[float] | float | None = None,
        unit: str | None = None,
    ):
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, order_seed=order_seed,
            spacing=spacing, unit=unit,
        )  # fmt: skip
        self.spacing_given = spacing is not None
        self.requested = (spacing, unit)  # checked again in setup() once the files say 2-D or volumes
        if normalize not in NORMALIZE:
            raise ValueError(f"data.normalize={normalize!r}; allowed: {' | '.join(NORMALIZE)}")
        self.limits = {"train": train_size, "val": val_size, "test": test_size}
        for split, limit in self.limits.items():
            if limit is not None and limit < 1:
                raise ValueError(f"data.{split}_size={limit} must be >= 1 (or null for the whole split)")
        self.root = Path(root).expanduser() if root not in (None, "") else None
        self.image_size = image_size
        self.multiple = 2**depth
        self.geometry = {
            split: Geometry(image_size, resize, self.multiple, train=split == "train", augment=augment)
            for split in SPLITS
        }
        self.normalize = normalize
        self.split_seed = split_seed
        self.samples: dict[str, list[Sample]] = {}
        self.validation: dict[str, float] = {}

    def list_samples(self, split: str) -> list[Sample]:
        """Every sample of ``split``, in a deterministic order; DataError for missing files."""
        raise NotImplementedError

    def resolve_num_classes(self, samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> int:
        return self.num_classes

    def allowed_labels(self) -> tuple[set[int], str]:
        """The raw mask values allowed, and how to say so in an error."""
        return set(range(self.num_classes)) | {IGNORE_INDEX}, f"0..{self.num_classes - 1} and {IGNORE_INDEX} (ignore)"

    def resolve_channels(self, samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> int:
        return 3  # photographs: grey, palette and CMYK images are converted to RGB

    def check_root(self) -> None:
        if self.root is None:
            raise DataError(f"data.root is not set; pass data.root=DIR ({self.layout})")
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"data.root={self.root} {what} ({self.layout})")

    def setup(self, stage: str | None = None) -> None:
        if not self.samples:
            self.samples = self.validate()
        super().setup(stage)

    def validate(self) -> dict[str, list[Sample]]:
        """The validation pass: list, scan (cached), check; sets num_classes and in_channels."""
        start = time.perf_counter()
        self.check_root()
        samples = {split: self.limit(split, self.list_samples(split)) for split in SPLITS}
        for split, split_samples in samples.items():
            if not split_samples:
                raise DataError(f"data.root={self.root}: the {split} split is empty ({self.layout})")
        cache = ScanCache(self.kind, self.root)
        try:
            infos = {
                split: scan_samples(samples[split], cache, type(self).read_mask, self.mask_kind) for split in SPLITS
            }
        finally:
            cache.save()
        for split in SPLITS:
            check_sizes(samples[split], infos[split])
        self.check_spatial_dims(check_one_kind(samples, infos), samples)
        self.num_classes = self.resolve_num_classes(samples, infos)
        allowed, describe_allowed = self.allowed_labels()
        for split in SPLITS:
            check_labels(samples[split], infos[split], allowed, describe_allowed)
        self.in_channels = self.resolve_channels(samples, infos)
        if self.image_size is None:
            for split in SPLITS:
                check_batchable(split, samples[split], infos[split], self.batch_size, self.multiple)
        if self.spatial_dims == 3:
            self.read_voxel_size(samples, infos)
        else:
            self.read_spacing(samples["train"][0], infos["train"][0])
        seconds = time.perf_counter() - start
        files = cache.hits + cache.misses
        self.validation = {"files": files, "cached": cache.hits, "read": cache.misses, "seconds": seconds}
        counts = "/".join(str(len(samples[split])) for split in SPLITS)
        what = "volumes" if self.spatial_dims == 3 else "samples"
        print(
            f"[unetlab] data: {self.kind} {self.root}: {counts} {what} (train/val/test), {self.in_channels} "
            f"channel(s), {self.num_classes} classes; validated {files} files ({cache.hits} cached) in {seconds:.2f} s"
        )
        return samples

    def check_spatial_dims(self, found: int, samples: dict[str, list[Sample]]) -> None:
        """``spatial_dims`` follows the files: volumes take a voxel size (``data.spacing`` as three numbers or one)
        and sizes by cropping, not resizing (that would change each volume's voxel size)."""
        example = samples["train"][0].image
        spacing, unit = self.requested
        if found == 2 and self.spatial_dims == 3:
            raise DataError(
                f"data.spacing={spacing!r} is a voxel size (sz, sy, sx), but the images are 2-D (e.g. {example}); "
                "give the pixel size [sy, sx]"
            )
        if found == 3:
            self.spatial_dims = 3
            try:
                self.spacing, self.unit = check_spacing(spacing, unit, 3)
            except ValueError as err:
                raise DataError(f"{err}: the images are volumes (e.g. {example})") from None
            if self.image_size is not None and self.geometry["train"].mode == "resize":
                raise DataError(
                    f"data.resize=resize with data.image_size={self.image_size} would scale every volume to a "
                    f"{self.image_size}-voxel cube, changing its voxel size; for volumes use data.resize=crop "
                    f"({self.image_size}-voxel cubes cut out) or data.image_size=null (e.g. {example})"
                )

    def read_voxel_size(self, samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> None:
        """The voxel size: the NIfTI headers' (one per data set, ``check_voxel_sizes``), which ``data.spacing`` must
        match when given; an unknown header unit is read as mm (as ITK reads it) unless ``data.unit`` names it. TIFF
        stacks state none: ``data.spacing``, else distances in voxels."""
        stated = check_voxel_sizes(samples, infos)
        if stated is None:
            return
        path, spacing, unit = stated
        if self.spacing_given:
            if not same_spacing(self.spacing, spacing) or unit not in ("unknown", self.unit):
                raise DataError(
                    f"data.spacing={list(self.spacing)} data.unit={self.unit} differs from the voxel size "
                    f"{voxel_text(spacing, unit)} (sz x sy x sx) in the header of {path}; leave data.spacing unset "
                    "to use the headers' voxel size"
                )
            return
        note = ""
        if unit == "unknown":
            unit, note = "mm", " (the header names no unit: read as mm; set data.spacing and data.unit to name one)"
        self.spacing, self.unit = tuple(spacing), unit
        print(f"[unetlab] data: voxel size {voxel_text(spacing, unit)} (slices x rows x columns) from the NIfTI header "
              f"of {path}{note}")  # fmt: skip

    def read_spacing(self, sample: Sample, info) -> None:
        """Without ``data.spacing``: the pixel size from the first training image's TIFF resolution tags (scaled when
        ``data.resize=resize`` changes its size), said in one line; else distances stay in px."""
        if self.spacing_given:
            return
        found = tiff_spacing(sample.image)
        if found is None:
            return
        (sy, sx), unit = found
        geometry = self.geometry["test"]
        if self.image_size is not None and geometry.mode == "resize":
            sy, sx = sy * info.height / self.image_size, sx * info.width / self.image_size
        self.spacing, self.unit = (sy, sx), unit
        print(f"[unetlab] data: pixel size {sy:.4g} x {sx:.4g} {unit} (rows x columns) from the resolution tags of "
              f"{sample.image}; data.spacing and data.unit set it instead")  # fmt: skip

    def limit(self, split: str, samples: list[Sample]) -> list[Sample]:
        """A seeded random subset of at most ``data.<split>_size`` samples, in listing order."""
        limit = self.limits[split]
        if limit is None or limit >= len(samples):
            return samples
        rng = np.random.default_rng([self.split_seed, SPLITS.index(split)])
        return [samples[i] for i in sorted(rng.choice(len(samples), size=limit, replace=False))]

    def build_split(self, split: str) -> FileDataset:
        return FileDataset(
            self.samples[split],
            self.in_channels,
            self.normalize,
            type(self).read_mask,
            self.label_lut,
            self.geometry[split],
            volume=self.spatial_dims == 3,
        )


def carve(names: Sequence[str], fraction: float, seed: int, what: str) -> tuple[list[str], list[str]]:
    """Split ``names`` into (kept, carved): a seeded random ``fraction`` (at least one) is carved out.

    Deterministic in (sorted names, fraction, seed); both parts keep sorted order.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.val_fraction={fraction} must lie strictly between 0 and 1")
    names = sorted(names)
    if len(names) < 2:
        raise DataError(f"{what} lists {len(names)} sample(s); carving a val split out of it needs at least 2")
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    carved = set(np.random.default_rng(seed).choice(len(names), size=count, replace=False).tolist())
    return [n for i, n in enumerate(names) if i not in carved], [n for i, n in enumerate(names) if i in carved]
