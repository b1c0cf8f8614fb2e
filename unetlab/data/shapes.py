"""Procedural shapes: objects with exactly known boundaries on a textured, noisy background.

Sample ``i`` of split ``s`` is a pure function of ``(seed, s, i)``: its random stream is
``numpy.random.default_rng([seed, split_id, i])``, so splits never share a stream. Objects are ellipses,
polygons, stars with radius ``r(t) = r0 * (1 + a * sin(k*t + phi))`` and thin bars; later objects occlude
earlier ones. The mask is exact membership of each pixel centre (pixel ``(r, c)`` sits at ``y=r, x=c``);
the image is the same membership painted with an object intensity, plus a smooth background texture and
Gaussian pixel noise. ``detail`` in ``[0, 1]`` raises the stars' lobe count ``k`` and amplitude ``a``.

``complexity`` in ``[0, 1]`` is the texture similarity of foreground and background (as Kamath et al. 2023 define
task complexity): above 0 the objects carry a fine texture (``plane_waves``) and the background is blended
towards the foreground, ``(1 - a) * background + a * (FOREGROUND_MEAN + texture)`` with ``a = 0.9 * complexity``, so
at 1 object and background differ only by a tenth of their old contrast and by which instance of the texture they
show. The texture has its own stream ``[seed, split_id, i, COMPLEXITY_STREAM]``: ``complexity=0`` is the plain data
set, and the objects and masks never depend on it.

A test-time shift (``shift``, ``unetlab.data.shifts``) draws from the stream ``[seed, split_id, i, SHIFT_STREAM]``,
so a shifted sample has the same objects, mask, texture and noise as the unshifted one: only the shift differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from unetlab.data.module import SPLITS, SegmentationDataModule
from unetlab.data.sampling import ItemKey, split_key
from unetlab.data.shifts import apply_shift, parse_shift

KINDS = ("ellipse", "polygon", "star", "bar")
SHIFT_STREAM = 1  # the last word of a shift's random stream (the sample's own stream has three)
COMPLEXITY_STREAM = 2  # the last word of the surface textures' stream


FOREGROUND_MEAN = 0.75  # the objects' mean intensity (each object draws one from 0.55..0.95)


def plane_waves(
    base: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    rng: np.random.Generator,
    amplitude: float,
    cycles: tuple[float, float],
    count: int = 3,
) -> np.ndarray:
    """``base`` (H, W) plus ``count`` random plane waves of ``cycles`` (low, high) cycles per image side, each of the
    given amplitude, added one by one: a new (H, W) array. The smooth background (3 waves of 1..6 cycles), the
    objects' texture at a complexity (12 of 2..22) and the ``texture`` shift (3 of 6..16) are all drawn with it."""
    size = yy.shape[0]
    out = np.array(base, dtype=np.float64)
    for _ in range(count):
        freq = rng.uniform(*cycles) * 2 * np.pi / size
        angle, phase = rng.uniform(0, 2 * np.pi, 2)
        out += amplitude * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    return out


def _ellipse(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, size: int, detail: float) -> np.ndarray:
    cy, cx = rng.uniform(0.15, 0.85, 2) * size
    a, b = rng.uniform(0.08, 0.25, 2) * size
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _polygon(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, size: int, detail: float) -> np.ndarray:
    """A star-shaped polygon of 3..8 vertices around a centre; even-odd rule on pixel centres."""
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.1, 0.25, n) * size
    py, px = cy + radii * np.sin(angles), cx + radii * np.cos(angles)
    inside = np.zeros(yy.shape, dtype=bool)
    for j in range(n):
        y0, x0, y1, x1 = py[j - 1], px[j - 1], py[j], px[j]
        crosses = (y0 > yy) != (y1 > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (xx < x_at)
    return inside


def _star(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, size: int, detail: float) -> np.ndarray:
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    r0 = rng.uniform(0.1, 0.22) * size
    k = int(rng.integers(3, 4 + round(9 * detail)))
    amplitude = rng.uniform(0.1, 0.1 + 0.35 * detail)
    phi = rng.uniform(0, 2 * np.pi)
    dy, dx = yy - cy, xx - cx
    return np.hypot(dy, dx) <= r0 * (1 + amplitude * np.sin(k * np.arctan2(dy, dx) + phi))


def _bar(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, size: int, detail: float) -> np.ndarray:
    cy, cx = rng.uniform(0.2, 0.8, 2) * size
    length = rng.uniform(0.3, 0.7) * size
    width = rng.uniform(1.5, 4.0)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    along = dx * np.cos(theta) + dy * np.sin(theta)
    across = -dx * np.sin(theta) + dy * np.cos(theta)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


DRAW = {"ellipse": _ellipse, "polygon": _polygon, "star": _star, "bar": _bar}


def make_sample(
    seed: int,
    split: str,
    index: int,
    image_size: int = 64,
    kinds: Sequence[str] = KINDS,
    num_classes: int = 2,
    max_objects: int = 3,
    detail: float = 0.5,
    texture: float = 0.08,
    noise: float = 0.05,
    shift: str | None = None,
    complexity: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: image (H, W) float32 and mask (H, W) int64, a pure function of its arguments.

    Label of an object: 1 when ``num_classes == 2``, else ``1 + kinds.index(kind)``. ``shift``: a test-time shift
    ``kind:strength`` (``unetlab.data.shifts``); ``complexity``: foreground/background texture similarity in [0, 1].
    The mask depends on neither.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float64)

    # Smooth texture: a few random plane waves; well below the object contrast by default.
    background = plane_waves(np.full((image_size, image_size), rng.uniform(0.2, 0.35)), yy, xx, rng, texture, (1, 6))

    image = background
    mask = np.zeros((image_size, image_size), dtype=np.int64)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        kind = kinds[int(rng.integers(len(kinds)))]
        inside = DRAW[kind](yy, xx, rng, image_size, detail)
        image = np.where(inside, rng.uniform(0.55, 0.95), image)
        mask[inside] = 1 if num_classes == 2 else 1 + list(kinds).index(kind)
    if complexity > 0:
        # the objects' texture: std about 0.15 against the ~0.45 object contrast
        texture_rng = np.random.default_rng([seed, SPLITS.index(split), index, COMPLEXITY_STREAM])
        texture = plane_waves(np.zeros_like(yy), yy, xx, texture_rng, 0.15 / np.sqrt(6), (2, 22), count=12)
        blend = 0.9 * complexity
        image = np.where(mask > 0, image + texture, (1 - blend) * image + blend * (FOREGROUND_MEAN + texture))
    shifted = parse_shift(shift)
    shift_rng = np.random.default_rng([seed, SPLITS.index(split), index, SHIFT_STREAM])
    if shifted is not None and shifted[0] == "texture":  # finer waves on the background, under the objects' paint
        image = image + np.where(mask == 0, plane_waves(np.zeros_like(yy), yy, xx, shift_rng, shifted[1], (6, 16)), 0.0)
    image = image + noise * rng.standard_normal(image.shape)
    if shifted is not None and shifted[0] != "texture":
        image = apply_shift(image, *shifted, shift_rng)
    return image.astype(np.float32), mask


class ShapesDataset(Dataset):
    """``length`` samples of one split, generated once and held as tensors.

    Items: image (1, H, W) float32, mask (H, W) int64.
    """

    def __init__(self, split: str, length: int, seed: int = 0, **sample_kwargs):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; allowed: {', '.join(SPLITS)}")
        images, masks = (
            zip(*(make_sample(seed, split, i, **sample_kwargs) for i in range(length))) if length else ((), ())
        )
        self.images = torch.from_numpy(np.stack(images))[:, None] if length else torch.empty(0)
        self.masks = torch.from_numpy(np.stack(masks)) if length else torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, key: ItemKey) -> tuple[Tensor, Tensor]:
        index, _ = split_key(key)  # no augmentation: a sample is already a function of (seed, split, index)
        return self.images[index], self.masks[index]


class ShapesDataModule(SegmentationDataModule):
    """The built-in procedural data set (``docs/data.md``); no download.

    Args:
        image_size: side of the square images (a multiple of ``2**model.depth``).
        num_classes: 2 (object vs background) or ``len(kinds) + 1`` (one class per shape kind).
        train_size, val_size, test_size: samples per split.
        seed: data seed; sample i of split s is a function of (seed, s, i).
        kinds: shape kinds drawn, from ellipse, polygon, star, bar.
        max_objects: 1..max_objects objects per image.
        detail: boundary detail in [0, 1] (star lobes and amplitude).
        texture, noise: background texture amplitude and pixel noise std (object contrast is ~0.45).
        complexity: texture similarity of foreground and background in [0, 1] (0: flat objects on the smooth
            background; 1: the background blended 90 % towards the objects' texture).
        test_shift: a test-time shift of the test split, ``kind:strength`` (``unetlab.data.shifts``: noise,
            contrast, blur, texture), or None; training and validation never see it.
        batch_size, num_workers, pin_memory: DataLoader settings.
        order_seed: seeds the training order (set by ``train`` to the run's ``seed``).
    """

    in_channels = 1

    def __init__(
        self,
        image_size: int = 64,
        num_classes: int | None = 2,
        train_size: int = 1024,
        val_size: int = 128,
        test_size: int = 128,
        seed: int = 0,
        kinds: Sequence[str] = KINDS,
        max_objects: int = 3,
        detail: float = 0.5,
        texture: float = 0.08,
        noise: float = 0.05,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        order_seed: int = 0,
        spacing: Sequence[float] | float | None = None,
        unit: str | None = None,
        test_shift: str | None = None,
        complexity: float = 0.0,
    ):
        super().__init__(
            batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory, order_seed=order_seed,
            spacing=spacing, unit=unit,
        )  # fmt: skip
        kinds, num_classes = check_kinds(kinds, KINDS, num_classes, "shapes")
        if not 0.0 <= detail <= 1.0:
            raise ValueError(f"data.detail={detail} must lie in [0, 1]")
        if not 0.0 <= complexity <= 1.0:
            raise ValueError(f"data.complexity={complexity} must lie in [0, 1]")
        if image_size < 8:
            raise ValueError(f"data.image_size={image_size} is too small (>= 8)")
        try:
            parse_shift(test_shift)
        except ValueError as err:
            raise ValueError(f"data.test_shift: {err}") from None
        self.test_shift = test_shift
        self.num_classes = num_classes
        self.image_size = image_size
        self.seed = seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.sample_kwargs = dict(
            image_size=image_size,
            kinds=kinds,
            num_classes=num_classes,
            max_objects=max_objects,
            detail=detail,
            texture=texture,
            noise=noise,
            complexity=float(complexity),
        )

    def build_split(self, split: str) -> ShapesDataset:
        return self.shifted_split(split, self.test_shift if split == "test" else None)

    def shifted_split(self, split: str, shift: str | None) -> ShapesDataset:
        """``split`` under the test-time shift ``shift`` (``kind:strength``, or None): the same samples (objects,
        masks), only the images shifted. ``unetlab-eval`` scores the model on these (``eval.shifts``)."""
        kwargs = self.sample_kwargs if parse_shift(shift) is None else {**self.sample_kwargs, "shift": shift}
        return cached_split(split, self.sizes[split], self.seed, kwargs)


_SPLITS: dict[str, ShapesDataset] = {}  # the last few splits generated by this process


def cached_split(split: str, length: int, seed: int, sample_kwargs: dict, dataset: type = ShapesDataset):
    """A split generated once per process: a split is a function of its arguments, and a process that trains, tests
    and evaluates (or a launcher's worker that runs many jobs of a grid) would otherwise draw the same samples again
    (~0.3 s per 700 images of 64x64). Items are read-only views of the stored tensors, as they always were.
    ``dataset``: the procedural data set's class (``ShapesDataset``, or ``Shapes3DDataset`` for volumes), called as
    ``dataset(split, length, seed=seed, **sample_kwargs)``."""
    key = repr((dataset.__name__, split, length, seed, sorted(sample_kwargs.items())))
    if key not in _SPLITS:
        while len(_SPLITS) >= 8:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = dataset(split, length, seed=seed, **sample_kwargs)
    return _SPLITS[key]


def check_kinds(kinds, allowed: Sequence[str], num_classes: int | None, name: str) -> tuple[list[str], int]:
    """``data.kinds`` and ``data.num_classes`` of a procedural data set ``name``: ValueError naming the key unless the
    kinds are known and the classes are 2 (object/background) or one per kind; returns the kinds as a list and
    the number of classes (None: 2)."""
    kinds = list(kinds)
    unknown = [kind for kind in kinds if kind not in allowed]
    if unknown or not kinds:
        raise ValueError(f"data.kinds={kinds} has unknown kind(s) {unknown}; allowed: {', '.join(allowed)}")
    num_classes = 2 if num_classes is None else num_classes
    if num_classes != 2 and num_classes != len(kinds) + 1:
        raise ValueError(
            f"data.num_classes={num_classes}: {name} has 2 classes (object/background) or one per kind "
            f"({len(kinds) + 1} for data.kinds={kinds})"
        )
    return kinds, num_classes
