"""PASCAL VOC 2012 semantic segmentation (Everingham et al.) as distributed: 21 classes, 255 = ignore.

Layout under ``data.root`` (the ``VOCdevkit/VOC2012`` folder)::

    JPEGImages/ID.jpg
    SegmentationClass/ID.png           palette PNGs: the palette index is the class (0 = background,
                                       1..20 = aeroplane..tvmonitor, 255 = the "void" border, ignored)
    ImageSets/Segmentation/train.txt   1,464 ids, one per line
    ImageSets/Segmentation/val.txt     1,449 ids

VOC's test labels are not public, so **the official ``val`` list is the test split** here, and the val split
is a seeded random ``data.val_fraction`` of the official ``train`` list (``data.split_seed``), train the rest.
Masks saved as one-channel PNGs (e.g. SegmentationClassAug) read as indices too; RGB masks are decoded by
the VOC colour map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.data.files import FileDataModule, carve
from unetlab.data.io import DataError, read_mask
from unetlab.data.module import IGNORE_INDEX
from unetlab.data.validate import Sample

LAYOUT = "expected JPEGImages/*.jpg, SegmentationClass/*.png and ImageSets/Segmentation/{train,val}.txt"
CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_colormap(count: int = 256) -> np.ndarray:
    """The VOC palette, (count, 3) uint8: the bits of the index spread over R, G, B (VOCdevkit's ``labelcolormap``)."""
    colors = np.zeros((count, 3), dtype=np.uint8)
    for index in range(count):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colors[index] = red, green, blue
    return colors


def read_voc_mask(path: Path) -> np.ndarray:
    """Class indices (H, W): palette or one-channel PNGs as stored, RGB PNGs through the VOC colour map."""
    try:
        with Image.open(path) as image:
            rgb = np.array(image, dtype=np.int64) if image.mode == "RGB" else None
    except OSError as err:
        raise DataError(f"{path}: cannot read the mask ({type(err).__name__}: {err})") from err
    if rgb is None:
        return read_mask(path)
    colors = voc_colormap()
    known = [*range(len(CLASSES)), IGNORE_INDEX]
    codes = (colors[known, 0].astype(np.int64) << 16) | (colors[known, 1].astype(np.int64) << 8) | colors[known, 2]
    pixel_codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    order = np.argsort(codes)
    position = np.clip(np.searchsorted(codes[order], pixel_codes), 0, len(codes) - 1)
    found = codes[order][position] == pixel_codes
    if not found.all():
        row, col = np.argwhere(~found)[0]
        raise DataError(f"{path}: RGB mask colour {tuple(rgb[row, col].tolist())} at ({row}, {col}) is no VOC class")
    return np.asarray(known, dtype=np.uint8)[order][position]


def read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: split list does not exist ({LAYOUT})")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class VOCDataModule(FileDataModule):
    """``data=voc data.root=DIR``: PASCAL VOC 2012 segmentation; test = official val, val carved from train.

    Args:
        root: the ``VOCdevkit/VOC2012`` folder.
        val_fraction: share of the official ``train`` list carved out (seeded by ``split_seed``) as val.
        The other arguments: see ``FileDataModule``.
    """

    kind = "voc"
    layout = LAYOUT
    mask_kind = "voc"
    read_mask = staticmethod(read_voc_mask)
    in_channels = 3
    num_classes = len(CLASSES)

    def __init__(self, root: str | None, val_fraction: float = 0.1, **kwargs):
        super().__init__(root, **kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.val_fraction = val_fraction

    def split_ids(self, split: str) -> list[str]:
        lists = self.root / "ImageSets" / "Segmentation"
        if split == "test":
            return read_ids(lists / "val.txt")
        train, val = carve(read_ids(lists / "train.txt"), self.val_fraction, self.split_seed, str(lists / "train.txt"))
        return train if split == "train" else val

    def list_samples(self, split: str) -> list[Sample]:
        samples = []
        for image_id in self.split_ids(split):
            image = self.root / "JPEGImages" / f"{image_id}.jpg"
            mask = self.root / "SegmentationClass" / f"{image_id}.png"
            if not image.is_file():
                raise DataError(f"{image}: missing image (listed in the {split} split)")
            if not mask.is_file():
                raise DataError(f"{mask}: missing mask for {image.name} (listed in the {split} split)")
            samples.append(Sample(image, mask))
        return samples
