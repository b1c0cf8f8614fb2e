"""Your own data on disk: ``root/{train,val,test}/{images,masks}/NAME.ext``, image and mask paired by stem.

Images: ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``; grey, RGB (alpha dropped) or multi-channel TIFF;
8-, 16-bit or float (``data.normalize``). One-channel images in a data set of C-channel images are repeated to C
channels; ``model.in_channels`` follows the data unless set. Masks: ``.png`` (one channel or palette: the
palette index is the label) or 2-D ``.tif``; values are class indices, ``255`` = ignore. JPEG masks are refused
(lossy compression changes the labels). Hidden files and files of other types are skipped.

Volumes (``docs/data.md``, Volumes): NIfTI (``.nii``, ``.nii.gz``; images (x, y, z) or (x, y, z, c)) and TIFF stacks
((D, H, W) or (D, H, W, C)) with NIfTI or 3-D TIFF masks; a sample whose mask is a volume is a volume. The module's
``spatial_dims`` becomes 3, its voxel size ``(sz, sy, sx)`` comes from the NIfTI headers (else ``data.spacing``).
"""

from __future__ import annotations

from pathlib import Path

import tifffile

from unetlab.data.files import FileDataModule
from unetlab.data.io import IMAGE_SUFFIXES, MASK_SUFFIXES, READ_ERRORS, DataError, is_nifti, is_tiff, stem_of, suffix_of
from unetlab.data.module import IGNORE_INDEX
from unetlab.data.validate import Sample, SampleInfo

LAYOUT = "expected root/{train,val,test}/{images,masks}/NAME.{png,tif,tiff,jpg,nii,nii.gz} with matching stems"


def _files_by_stem(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, Path]]:
    """(stem -> file with one of ``suffixes``, stem -> other file) in ``folder``; hidden files skipped."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder does not exist ({LAYOUT})")
    wanted: dict[str, Path] = {}
    others: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        stem = stem_of(path)
        if suffix_of(path) not in suffixes:
            others[stem] = path
        elif stem in wanted:
            raise DataError(f"{path}: two files with the stem {stem!r} ({wanted[stem].name}, {path.name})")
        else:
            wanted[stem] = path
    return wanted, others


def _holds_volumes(root: str | None) -> bool:
    """Whether the first training mask is a volume (NIfTI, or a TIFF of three dimensions after squeezing); a look
    before ``setup()`` that only decides whether a three-number ``data.spacing`` is a voxel size."""
    if root in (None, ""):
        return False
    masks = Path(root).expanduser() / "train" / "masks"
    if not masks.is_dir():
        return False
    for path in sorted(masks.iterdir()):
        if path.name.startswith(".") or suffix_of(path) not in MASK_SUFFIXES:
            continue
        if is_nifti(path):
            return True
        if not is_tiff(path):
            return False
        try:
            with tifffile.TiffFile(path) as tif:
                return sum(side > 1 for side in tif.series[0].shape) == 3
        except READ_ERRORS:
            return False  # setup() says what is wrong with it
    return False


class FolderDataModule(FileDataModule):
    """``data=folder data.root=DIR``: train/val/test folders of images and masks (``docs/data.md``).

    Args:
        root: the folder holding ``train/``, ``val/`` and ``test/``, each with ``images/`` and ``masks/``.
        num_classes: mask labels lie in ``0..num_classes-1`` (or 255); None infers it from the training masks
            (max label + 1, 255 excluded) and prints it.
        The other arguments: see ``FileDataModule``.
    """

    kind = "folder"
    layout = LAYOUT

    def __init__(self, root: str | None, num_classes: int | None = None, **kwargs):
        spacing = kwargs.get("spacing")
        if spacing is not None and not isinstance(spacing, (int, float)) and len(spacing) == 3 and _holds_volumes(root):
            self.spatial_dims = 3  # a voxel size (sz, sy, sx); setup() confirms from all the files
        super().__init__(root, **kwargs)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"data.num_classes={num_classes} must be >= 2 (background and at least one class)")
        self.requested_num_classes = num_classes

    def list_samples(self, split: str) -> list[Sample]:
        images_dir, masks_dir = self.root / split / "images", self.root / split / "masks"
        images, _ = _files_by_stem(images_dir, IMAGE_SUFFIXES)
        masks, other_masks = _files_by_stem(masks_dir, MASK_SUFFIXES)
        if not images:
            raise DataError(f"{images_dir}: no images, so the {split} split is empty ({LAYOUT})")
        for stem, image in images.items():
            if stem not in masks:
                other = other_masks.get(stem)
                if other is not None and other.suffix.lower() in (".jpg", ".jpeg"):
                    raise DataError(
                        f"{other}: JPEG masks are lossy (compression alters labels); save it as PNG or TIFF"
                    )
                found = f"; found {other.name}, not a mask format" if other is not None else ""
                wanted = ".nii.gz (or .nii, .tif, .tiff)" if is_nifti(image) else ".png (or .tif, .tiff, .nii, .nii.gz)"
                raise DataError(f"{image}: missing mask {masks_dir / stem}{wanted}{found}")
        for stem, mask in masks.items():
            if stem not in images:
                raise DataError(
                    f"{mask}: mask without an image (no {images_dir / stem}.png, .tif, .tiff, .jpg, .nii or .nii.gz)"
                )
        return [Sample(images[stem], masks[stem]) for stem in images]

    def resolve_num_classes(self, samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> int:
        if self.requested_num_classes is not None:
            self.inferred = False
            return self.requested_num_classes
        labels = {label for info in infos["train"] for label in info.labels if label != IGNORE_INDEX}
        num_classes = max(labels, default=0) + 1
        if num_classes < 2:
            raise DataError(
                f"{self.root / 'train' / 'masks'}: the training masks hold only label 0 (and 255 = ignore), so "
                "data.num_classes cannot be inferred; set data.num_classes"
            )
        self.inferred = True
        print(f"[unetlab] data.num_classes={num_classes} inferred from the training masks (max label + 1)")
        return num_classes

    def allowed_labels(self) -> tuple[set[int], str]:
        allowed, describe = super().allowed_labels()
        if self.inferred:
            describe += (
                f" (data.num_classes={self.num_classes} was inferred from the training masks; "
                "set data.num_classes if the data has more classes)"
            )
        else:
            describe += f" (data.num_classes={self.num_classes})"
        return allowed, describe

    def resolve_channels(self, samples: dict[str, list[Sample]], infos: dict[str, list[SampleInfo]]) -> int:
        channels = max(info.channels for split_infos in infos.values() for info in split_infos)
        for split, split_infos in infos.items():
            for sample, info in zip(samples[split], split_infos, strict=True):
                if info.channels not in (1, channels):
                    raise DataError(
                        f"{sample.image}: has {info.channels} channels, other images have {channels}; "
                        "images must all have one channel count (or one channel, repeated)"
                    )
        return channels
