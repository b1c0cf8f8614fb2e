"""The Oxford-IIIT Pet data set (Parkhi et al. 2012) as distributed: pet vs background from the trimaps.

Layout under ``data.root``::

    images/NAME.jpg                  7,390 photographs (a few are grey, RGBA or CMYK: read as RGB)
    annotations/trimaps/NAME.png     1 = pet, 2 = background, 3 = border / not classified
    annotations/trainval.txt         lines "NAME CLASS_ID SPECIES BREED_ID", e.g. "Abyssinian_100 1 1 1"
    annotations/test.txt             the same, for the test split

Labels: pet 1, background 0, border ``data.border``: ``ignore`` (255, left out of loss and metrics; default),
``foreground`` (1) or ``background`` (0). Splits: test = ``test.txt``; val = a seeded random
``data.val_fraction`` of ``trainval.txt`` (``data.split_seed``), train = the rest.
"""

from __future__ import annotations

import numpy as np

from unetlab.data.files import FileDataModule, carve
from unetlab.data.io import DataError
from unetlab.data.module import IGNORE_INDEX
from unetlab.data.validate import Sample

LAYOUT = "expected images/*.jpg, annotations/trimaps/*.png, annotations/trainval.txt and annotations/test.txt"
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
BORDER = {"ignore": IGNORE_INDEX, "foreground": 1, "background": 0}


def trimap_lut(border: str) -> np.ndarray:
    """Raw trimap value -> label, as a 256-entry lookup table (values other than 1, 2, 3 fail validation)."""
    if border not in BORDER:
        raise ValueError(f"data.border={border!r}; allowed: {' | '.join(BORDER)}")
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[TRIMAP_PET] = 1
    lut[TRIMAP_BACKGROUND] = 0
    lut[TRIMAP_BORDER] = BORDER[border]
    return lut


def read_list(path) -> list[str]:
    """Image names from an annotation list (first field per line; ``#`` comments and blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"{path}: split list does not exist ({LAYOUT})")
    names = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 4 or not all(field.isdigit() for field in fields[1:]):
            raise DataError(f"{path}:{number}: expected 'NAME CLASS_ID SPECIES BREED_ID', got {line.strip()!r}")
        names.append(fields[0])
    return names


class PetsDataModule(FileDataModule):
    """``data=pets data.root=DIR``: Oxford-IIIT Pet, binary pet segmentation (2 classes, RGB images).

    Args:
        root: the folder holding ``images/`` and ``annotations/``.
        border: the trimap's border class: ``ignore`` (255) | ``foreground`` | ``background``.
        val_fraction: share of ``trainval.txt`` carved out (seeded by ``split_seed``) as the val split.
        The other arguments: see ``FileDataModule``.
    """

    kind = "pets"
    layout = LAYOUT
    in_channels = 3
    num_classes = 2

    def __init__(self, root: str | None, border: str = "ignore", val_fraction: float = 0.1, **kwargs):
        super().__init__(root, **kwargs)
        self.label_lut = trimap_lut(border)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
        self.val_fraction = val_fraction

    def split_names(self, split: str) -> list[str]:
        annotations = self.root / "annotations"
        if split == "test":
            return read_list(annotations / "test.txt")
        trainval = annotations / "trainval.txt"
        train, val = carve(read_list(trainval), self.val_fraction, self.split_seed, str(trainval))
        return train if split == "train" else val

    def list_samples(self, split: str) -> list[Sample]:
        samples = []
        for name in self.split_names(split):
            image = self.root / "images" / f"{name}.jpg"
            trimap = self.root / "annotations" / "trimaps" / f"{name}.png"
            if not image.is_file():
                raise DataError(f"{image}: missing image (listed in the {split} split)")
            if not trimap.is_file():
                raise DataError(f"{trimap}: missing trimap for {image.name} (listed in the {split} split)")
            samples.append(Sample(image, trimap))
        return samples

    def allowed_labels(self) -> tuple[set[int], str]:
        return {TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER}, "the trimap values 1 (pet), 2 (background), 3 (border)"
