"""Procedural 3D shapes: volumes with exactly known boundaries on a smooth textured, noisy background.

Items: image (1, D, H, W) float32, mask (D, H, W) int64. Volume ``i`` of split ``s`` is a pure function of
``(seed, s, i)``: its random stream is ``numpy.random.default_rng([seed, split_id, i])``, as in ``shapes``.

Objects live in physical units (``data.unit``, mm by default) and are sampled on the anisotropic grid: voxel
``(z, y, x)`` has its centre at ``(z*sz, y*sy, x*sx)``, and the mask is the exact inside-test of the analytic shape at
voxel centres (``inside``). Kinds: ``ellipsoid`` (random rotation, radii from 1.5 in-plane voxels up to a sixth of
the volume's shortest side, times 0.6..1.4 per axis), ``plate`` (a rotated rectangular slab, 1.5..3 mm thick, sides
0.3..0.7 of the shortest side) and ``tube`` (a rotated cylinder segment, radius 1..3 mm, 0.5..0.9 of the shortest side
long). An object covering fewer than ``MIN_VOXELS`` voxel centres is drawn again; later objects occlude earlier ones.
The image paints each object with its own intensity (0.55..0.95) over a smooth background (0.2..0.35 plus three random
3D plane waves of amplitude ``texture``), plus Gaussian voxel noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from unetlab.data.module import SPLITS, SegmentationDataModule
from unetlab.data.sampling import ItemKey, split_key
from unetlab.data.shapes import cached_split, check_kinds

KINDS = ("ellipsoid", "plate", "tube")
MIN_VOXELS = 4  # an object that covers fewer voxel centres (a sliver between slices) is drawn again
MAX_DRAWS = 20  # ... at most this often; then the last draw stands


class Object3D(NamedTuple):
    """One analytic object in physical units. ``rotation`` (3, 3): its columns are the object's axes in (z, y, x).

    ``half_axes`` along those axes: an ellipsoid's radii; a plate's half thickness (along its normal, axis 0) and
    half sides; a tube's half length (axis 0), then its radius twice."""

    kind: str
    centre: tuple[float, float, float]
    rotation: np.ndarray
    half_axes: tuple[float, float, float]


def voxel_centres(volume_size: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Physical coordinates of the voxel centres, broadcastable: z (D, 1, 1), y (1, H, 1), x (1, 1, W)."""
    axes = [np.arange(n, dtype=np.float64) * s for n, s in zip(volume_size, spacing)]
    return np.ix_(*axes)


def inside(obj: Object3D, zz: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Bool (D, H, W): which voxel centres (``voxel_centres``) lie inside ``obj``, boundary included."""
    offsets = (zz - obj.centre[0], yy - obj.centre[1], xx - obj.centre[2])
    u, v, w = (sum(obj.rotation[j, i] * offsets[j] for j in range(3)) for i in range(3))  # local coordinates
    a, b, c = obj.half_axes
    if obj.kind == "ellipsoid":
        return (u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2 <= 1.0
    if obj.kind == "plate":
        return (np.abs(u) <= a) & (np.abs(v) <= b) & (np.abs(w) <= c)
    if obj.kind == "tube":
        return (np.abs(u) <= a) & (v**2 + w**2 <= b**2)
    raise ValueError(f"kind={obj.kind!r}; allowed: {', '.join(KINDS)}")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (3, 3), from a random unit quaternion."""
    q0, q1, q2, q3 = (q := rng.standard_normal(4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (q2 * q2 + q3 * q3), 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2)],
        [2 * (q1 * q2 + q0 * q3), 1 - 2 * (q1 * q1 + q3 * q3), 2 * (q2 * q3 - q0 * q1)],
        [2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), 1 - 2 * (q1 * q1 + q2 * q2)],
    ])  # fmt: skip


def draw_object(kind: str, rng: np.random.Generator, volume_size: Sequence[int], spacing: Sequence[float]) -> Object3D:
    """A random object of ``kind``, its centre in the middle 60 % of the volume along each axis."""
    extent = np.asarray(volume_size) * np.asarray(spacing)
    side = float(extent.min())
    centre = tuple(rng.uniform(0.2, 0.8, 3) * extent)
    rotation = random_rotation(rng)
    if kind == "ellipsoid":
        # from a few in-plane voxels across up to a third of the volume
        radius = rng.uniform(1.5 * min(spacing), side / 6)
        half_axes = radius * rng.uniform(0.6, 1.4, 3)
    elif kind == "plate":
        half_axes = np.array([rng.uniform(0.75, 1.5), *rng.uniform(0.15, 0.35, 2) * side])
    else:
        radius = rng.uniform(1.0, 3.0)
        half_axes = np.array([rng.uniform(0.25, 0.45) * side, radius, radius])
    return Object3D(kind, centre, rotation, tuple(half_axes))


def smooth_field(
    zz: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    rng: np.random.Generator,
    amplitude: float,
    cycles: tuple[float, float] = (1, 4),
    count: int = 3,
) -> np.ndarray:
    """(D, H, W): ``count`` random 3D plane waves of ``cycles`` (low, high) per volume side, each of ``amplitude``."""
    side = float(np.mean([zz.max(), yy.max(), xx.max()])) or 1.0
    out = np.zeros(np.broadcast_shapes(zz.shape, yy.shape, xx.shape))
    for _ in range(count):
        direction = (d := rng.standard_normal(3)) / np.linalg.norm(d)
        freq = rng.uniform(*cycles) * 2 * np.pi / side
        phase = rng.uniform(0, 2 * np.pi)
        out += amplitude * np.sin(freq * (direction[0] * zz + direction[1] * yy + direction[2] * xx) + phase)
    return out


def draw_scene(
    rng: np.random.Generator,
    volume_size: Sequence[int],
    spacing: Sequence[float],
    kinds: Sequence[str] = KINDS,
    max_objects: int = 3,
) -> list[tuple[Object3D, np.ndarray]]:
    """1..``max_objects`` random objects, each with its voxels (bool (D, H, W), before occlusion), in painting order.
    An object covering fewer than ``MIN_VOXELS`` voxel centres is drawn again (up to ``MAX_DRAWS`` times)."""
    grid = voxel_centres(volume_size, spacing)
    scene = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        for _ in range(MAX_DRAWS):
            obj = draw_object(kind, rng, volume_size, spacing)
            covered = inside(obj, *grid)
            if covered.sum() >= MIN_VOXELS:
                break
        scene.append((obj, covered))
    return scene


def make_volume(
    seed: int,
    split: str,
    index: int,
    volume_size: Sequence[int] = (16, 48, 48),
    spacing: Sequence[float] = (2.5, 0.8, 0.8),
    kinds: Sequence[str] = KINDS,
    num_classes: int = 2,
    max_objects: int = 3,
    texture: float = 0.08,
    noise: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """One volume: image (D, H, W) float32 and mask (D, H, W) int64, a pure function of its arguments.

    The stream draws the scene first (``draw_scene``), then the background, the objects' intensities and the noise;
    later objects occlude earlier ones. Label of an object: 1 when ``num_classes == 2``, else
    ``1 + kinds.index(kind)``."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    scene = draw_scene(rng, volume_size, spacing, kinds, max_objects)
    image = rng.uniform(0.2, 0.35) + smooth_field(*voxel_centres(volume_size, spacing), rng, texture)
    mask = np.zeros(tuple(volume_size), dtype=np.int64)
    for obj, covered in scene:
        image[covered] = rng.uniform(0.55, 0.95)
        mask[covered] = 1 if num_classes == 2 else 1 + list(kinds).index(obj.kind)
    image += noise * rng.standard_normal(image.shape)
    return image.astype(np.float32), mask


class Shapes3DDataset(Dataset):
    """``length`` volumes of one split, generated once and held as tensors.

    Items: image (1, D, H, W) float32, mask (D, H, W) int64 (held as uint8: a quarter of the memory)."""

    def __init__(self, split: str, length: int, seed: int = 0, **volume_kwargs):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
        size = tuple(volume_kwargs.get("volume_size", (16, 48, 48)))
        self.images = torch.empty((length, 1, *size), dtype=torch.float32)
        self.masks = torch.empty((length, *size), dtype=torch.uint8)
        for i in range(length):
            image, mask = make_volume(seed, split, i, **volume_kwargs)
            self.images[i, 0] = torch.from_numpy(image)
            self.masks[i] = torch.from_numpy(mask)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, key: ItemKey) -> tuple[Tensor, Tensor]:
        index, _ = split_key(key)  # no augmentation: a volume is already a function of (seed, split, index)
        return self.images[index], self.masks[index].long()


class Shapes3DDataModule(SegmentationDataModule):
    """Procedural volumes (``docs/data.md``, ``data=shapes3d``); no download.

    Args:
        volume_size: [D, H, W] voxels, each >= 8 (a multiple of ``2**model.depth`` along each axis the model halves).
        spacing, unit: the voxel size [sz, sy, sx] in ``unit``; objects are drawn in these units.
        num_classes: 2 (object vs background) or ``len(kinds) + 1`` (one class per kind).
        train_size, val_size, test_size: volumes per split.
        seed: data seed; volume i of split s is a function of (seed, s, i).
        kinds: object kinds drawn, from ellipsoid, plate, tube.
        max_objects: 1..max_objects objects per volume.
        texture, noise: background texture amplitude and voxel noise std (object contrast is ~0.45).
        batch_size, num_workers, pin_memory: DataLoader settings.
        order_seed: seeds the training order (set by ``train`` to the run's ``seed``).
    """

    in_channels = 1
    spatial_dims = 3

    def __init__(
        self,
        volume_size: Sequence[int] = (16, 48, 48),
        spacing: Sequence[float] | float = (2.5, 0.8, 0.8),
        unit: str = "mm",
        num_classes: int | None = 2,
        train_size: int = 256,
        val_size: int = 32,
        test_size: int = 64,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        max_objects: int = 3,
        texture: float = 0.08,
        noise: float = 0.05,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        order_seed: int = 0,
    ):
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, order_seed=order_seed,
            spacing=spacing, unit=unit,
        )  # fmt: skip
        volume_size = list(volume_size)
        if len(volume_size) != 3 or not all(isinstance(n, int) and n >= 8 for n in volume_size):
            raise ValueError(f"data.volume_size={volume_size} must be three voxel counts [D, H, W], each >= 8")
        kinds, num_classes = check_kinds(kinds, KINDS, num_classes, "shapes3d")
        if max_objects < 1:
            raise ValueError(f"data.max_objects={max_objects} must be >= 1")
        for key, value in (("texture", texture), ("noise", noise)):
            if value < 0:
                raise ValueError(f"data.{key}={value} must be >= 0")
        self.num_classes = num_classes
        self.volume_size = tuple(volume_size)
        self.seed = seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.volume_kwargs = dict(
            volume_size=self.volume_size,
            spacing=tuple(self.spacing),
            kinds=kinds,
            num_classes=num_classes,
            max_objects=max_objects,
            texture=float(texture),
            noise=float(noise),
        )

    def build_split(self, split: str) -> Shapes3DDataset:
        return cached_split(split, self.sizes[split], self.seed, self.volume_kwargs, Shapes3DDataset)
