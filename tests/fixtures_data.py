"""Small data sets written in each real layout (folder, Oxford-IIIT Pet, PASCAL VOC 2012) for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetlab.data.voc import voc_colormap

HEIGHT, WIDTH = 40, 48


def draw(seed: int, num_classes: int = 3, height: int = HEIGHT, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image (H, W, 3) uint8 and its mask (H, W) uint8: a disc of class 1 and a box of class 2 (if any)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=np.uint8)
    cy, cx, r = rng.integers(10, height - 10), rng.integers(10, width - 10), rng.integers(5, 9)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1
    if num_classes > 2:
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        mask[top : top + 6, left : left + 8] = 2
    intensity = np.array([40, 200, 120], dtype=np.float64)[mask]
    image = intensity[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_folder(
    root: Path,
    counts: dict[str, int] | None = None,
    num_classes: int = 3,
    grey: bool = False,
    image_suffix: str = ".png",
) -> Path:
    """``root/{train,val,test}/{images,masks}/sample_K.ext``; returns root."""
    counts = counts or {"train": 4, "val": 2, "test": 2}
    seed = 0
    for split, count in counts.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, mask = draw(seed, num_classes)
            seed += 1
            picture = Image.fromarray(image[..., 0] if grey else image)
            picture.save(root / split / "images" / f"sample_{index}{image_suffix}")
            Image.fromarray(mask).save(root / split / "masks" / f"sample_{index}.png")
    return root


def trimap_from(mask: np.ndarray) -> np.ndarray:
    """Oxford-IIIT Pet trimap values: 1 = pet, 2 = background, 3 = a border ring around the pet."""
    pet = mask > 0
    grown = pet.copy()
    grown[1:] |= pet[:-1]
    grown[:-1] |= pet[1:]
    grown[:, 1:] |= pet[:, :-1]
    grown[:, :-1] |= pet[:, 1:]
    trimap = np.where(pet, 1, 2).astype(np.uint8)
    trimap[grown & ~pet] = 3
    return trimap


def write_pets(root: Path, trainval: int = 6, test: int = 3) -> Path:
    """``images/NAME.jpg``, ``annotations/trimaps/NAME.png``, ``annotations/{trainval,test}.txt``; returns root."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    breeds = [("Abyssinian", 1, 1), ("beagle", 2, 2)]
    lists: dict[str, list[str]] = {"trainval": [], "test": []}
    seed = 100
    for list_name, count in (("trainval", trainval), ("test", test)):
        for index in range(count):
            breed, class_id, species = breeds[index % 2]
            name = f"{breed}_{seed}"
            image, mask = draw(seed, num_classes=2)
            seed += 1
            Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=95)
            Image.fromarray(trimap_from(mask)).save(root / "annotations" / "trimaps" / f"{name}.png")
            lists[list_name].append(f"{name} {class_id} {species} {class_id}")
    for list_name, lines in lists.items():
        (root / "annotations" / f"{list_name}.txt").write_text("\n".join(lines) + "\n")
    return root


def save_voc_mask(path: Path, labels: np.ndarray) -> None:
    """A palette PNG as VOC ships it: mode P, the palette index is the class, the VOC colour map as palette."""
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), labels.astype(np.uint8).tobytes())
    image.putpalette(voc_colormap().ravel().tolist())
    image.save(path)


def write_voc(root: Path, train: int = 6, val: int = 3) -> Path:
    """``JPEGImages/ID.jpg``, ``SegmentationClass/ID.png``, ``ImageSets/Segmentation/{train,val}.txt``."""
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    seed = 200
    for list_name, count in (("train", train), ("val", val)):
        ids = []
        for _ in range(count):
            image_id = f"2007_{seed:06d}"
            image, mask = draw(seed, num_classes=3)
            labels = np.choose(mask, [0, 15, 8]).astype(np.uint8)  # background, person, cat
            labels[0, :] = 255  # a void border row, as VOC draws around objects
            seed += 1
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
            save_voc_mask(root / "SegmentationClass" / f"{image_id}.png", labels)
            ids.append(image_id)
        (root / "ImageSets" / "Segmentation" / f"{list_name}.txt").write_text("\n".join(ids) + "\n")
    return root
