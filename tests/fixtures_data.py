"""Small data sets written in each real layout (folder, Oxford-IIIT Pet, PASCAL VOC 2012) for the data tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel
import numpy as np
import tifffile
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


# --- volumes: the folder layout with NIfTI files or TIFF stacks ---------------------------------------------------

DEPTH, VOLUME_HEIGHT, VOLUME_WIDTH = 6, 20, 24  # (D, H, W) = (z, y, x)
VOXEL = (2.5, 0.8, 0.8)  # (sz, sy, sx) in mm: thick slices, as in a clinical CT or MR series


def draw_volume(
    seed: int, num_classes: int = 3, shape: tuple[int, int, int] = (DEPTH, VOLUME_HEIGHT, VOLUME_WIDTH)
) -> tuple[np.ndarray, np.ndarray]:
    """A volume (D, H, W) int16 and its mask (D, H, W) uint8: a ball of class 1, a box of class 2 (if any)."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    zz, yy, xx = np.mgrid[0:depth, 0:height, 0:width]
    mask = np.zeros(shape, dtype=np.uint8)
    cz, cy, cx = depth // 2, rng.integers(6, height - 6), rng.integers(6, width - 6)
    mask[((zz - cz) / 2) ** 2 + ((yy - cy) / 4) ** 2 + ((xx - cx) / 4) ** 2 <= 1] = 1
    if num_classes > 2:
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 5)
        mask[:2, top : top + 4, left : left + 5] = 2
    volume = np.array([100, 900, 500])[mask] + rng.normal(0, 20, shape)
    return volume.astype(np.int16), mask


def nifti_affine(spacing: tuple[float, float, float] = VOXEL) -> np.ndarray:
    """Voxel -> world (mm) of a volume stored (x, y, z) with voxel size ``spacing = (sz, sy, sx)``, RAS axes."""
    sz, sy, sx = spacing
    return np.array([[sx, 0, 0, -10.0], [0, sy, 0, 20.0], [0, 0, sz, -30.0], [0, 0, 0, 1]])


def save_nifti(
    path: Path, volume: np.ndarray, spacing: tuple[float, float, float] = VOXEL, unit: str | None = "mm",
    affine: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Write a (D, H, W) or (C, D, H, W) array as NIfTI stores it, (x, y, z[, c]) (the axes reversed)."""
    image = nibabel.Nifti1Image(volume.T, nifti_affine(spacing) if affine is None else affine)
    if unit is not None:
        image.header.set_xyzt_units(unit)
    nibabel.save(image, path)


def patch_nifti_zoom(path: Path, axis: int, value: float) -> None:
    """Overwrite the header's zoom (pixdim) of ``axis`` (0 = x) in place, the affine left as it is."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    offset = 80 + 4 * axis  # pixdim[1 + axis], float32, in the 348-byte NIfTI-1 header
    raw = raw[:offset] + struct.pack("<f", value) + raw[offset + 4 :]
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)


def write_volume_folder(
    root: Path, counts: dict[str, int] | None = None, suffix: str = ".nii.gz", num_classes: int = 3,
    spacing: tuple[float, float, float] = VOXEL, unit: str | None = "mm",
) -> Path:  # fmt: skip
    """``root/{train,val,test}/{images,masks}/case_K{suffix}``: NIfTI volumes (``.nii``, ``.nii.gz``) or TIFF stacks
    (``.tif``; no voxel size stored); returns root."""
    counts = counts or {"train": 3, "val": 1, "test": 1}
    seed = 300
    for split, count in counts.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            volume, mask = draw_volume(seed, num_classes)
            seed += 1
            for folder, array in (("images", volume), ("masks", mask)):
                path = root / split / folder / f"case_{index}{suffix}"
                if suffix == ".tif":
                    tifffile.imwrite(path, array)
                else:
                    save_nifti(path, array, spacing, unit)
    return root
