"""The resolution floor (``docs/probes-and-floors.md``): the best label map a map at level ``i`` allows.

A probe at level ``i`` is a per-class logit map of ``H/2**i x W/2**i`` cells, bilinearly upsampled to ``H x W`` and
read out by argmax. The floor gives every test image its own free logit map of that size, optimised against the
image's ground truth with the networks' own loss family (cross-entropy + soft Dice, ignored pixels left out), and reads
it out the same way. No probe at level ``i`` can do better than the best such map, so (up to how well the surrogate
and the optimiser find it) probe error minus floor is detail lost beyond what the resolution alone forces.

It depends only on the ground truth: ``cached_floor`` computes it once per set of masks and level and keeps it in
``$XDG_CACHE_HOME/unetlab/floors`` (else ``~/.cache/unetlab/floors``), shared by every model evaluated on the same
test split (a file lock lets parallel jobs wait for one computation).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from filelock import FileLock
from torch import Tensor

from unetlab.atomic import replace_atomically
from unetlab.conventions import IGNORE_INDEX

# Adam on the free logit maps: 300 steps at lr 0.1 from the area fractions (docs/probes-and-floors.md shows that
# doubling the steps moves the floor by less than its interval). Part of the cache key.
FLOOR_STEPS = 300
FLOOR_LR = 0.1
FLOOR_VERSION = 2  # 1 was the area-average-and-threshold floor
CHUNK = 256  # images optimised at once (memory: CHUNK x K x H x W floats, a few times over)


def class_fractions(masks: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """One-hot label maps as float fractions: (N, H, W) int64 -> (N, K, H, W); ignored pixels are all zero. Volumes:
    (N, D, H, W) -> (N, K, D, H, W)."""
    valid = masks != ignore_index
    one_hot = F.one_hot(torch.where(valid, masks, 0), num_classes).movedim(-1, 1).float()
    return one_hot * valid.unsqueeze(1)


@lru_cache(maxsize=64)
def _linear_weights(out: int, size: int, dtype: torch.dtype, device: str) -> Tensor:
    """(out, size): the weights of 1-D linear interpolation from ``size`` to ``out`` samples (align_corners=False)."""
    eye = torch.eye(size, dtype=torch.float64)[None]  # each input sample alone, as a signal
    weights = F.interpolate(eye, size=out, mode="linear", align_corners=False)[0].T
    return weights.to(dtype=dtype, device=device).contiguous()


def read_out(cells: Tensor, size: tuple[int, ...]) -> Tensor:
    """Per-class cell logits (N, K, h, w) -> full-resolution logits (N, K, H, W): bilinear upsampling
    (``align_corners=False``), the read-out of the probes and the floors. Volumes: (N, K, d, h, w) -> (N, K, D, H,
    W), trilinear.

    Written as the separable product ``A_h @ cells @ A_w.T``, which equals ``F.interpolate(..., "bilinear")`` to
    float precision (tested) and runs forward and backward ~3x faster on a CPU (measured at 16 x 2 x 8 x 8 -> 64 x 64:
    0.5 vs 1.6 ms); the probes and floors take hundreds of steps through it. Volumes: ``A_d`` along the slices first,
    then the same product per slice; equal to ``"trilinear"`` (tested), 4.5x faster forward and backward (16 x 2 x 4 x
    12 x 12 -> 16 x 48 x 48: 6.5 vs 29 ms).
    """
    if tuple(cells.shape[2:]) == tuple(size):
        return cells
    if len(size) == 3:  # the same product along the slices too: A_d applied to the flattened (h, w) plane first
        depth, height, width = size
        slices = _linear_weights(depth, cells.shape[-3], cells.dtype, str(cells.device))
        cells = (slices @ cells.flatten(-2)).unflatten(-1, cells.shape[-2:])  # (N, K, D, h, w)
    else:
        height, width = size
    rows = _linear_weights(height, cells.shape[-2], cells.dtype, str(cells.device))
    cols = _linear_weights(width, cells.shape[-1], cells.dtype, str(cells.device))
    return rows @ cells @ cols.T


def surrogate_loss(logits: Tensor, masks: Tensor, fractions: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Per-image cross-entropy (mean over valid pixels) + 1 - soft Dice over the foreground classes, summed over
    images: logits (N, K, H, W), masks (N, H, W), fractions = ``class_fractions(masks)`` (volumes: one more axis). A
    scalar whose gradient with respect to image n's logits depends on image n alone."""
    valid = masks != ignore_index
    pixel_dims = tuple(range(1, masks.ndim))
    pixels = valid.sum(dim=pixel_dims).clamp_min(1)
    ce = F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="none").sum(dim=pixel_dims) / pixels
    probs = logits.softmax(dim=1) * valid.unsqueeze(1)
    spatial = tuple(range(2, logits.ndim))
    intersection = (probs * fractions).sum(dim=spatial)  # (N, K)
    denominator = probs.sum(dim=spatial) + fractions.sum(dim=spatial)
    dice = (2 * intersection + 1) / (denominator + 1)
    return (ce + 1 - dice[:, 1:].mean(dim=1)).sum()


def resolution_floor(
    masks: Tensor,
    level: int,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    steps: int = FLOOR_STEPS,
    lr: float = FLOOR_LR,
) -> Tensor:
    """The best label map that a level-``level`` map allows, per image: (N, H, W) int64 -> (N, H, W) int64 (volumes:
    (N, D, H, W), cells of ``2**level`` voxels along every axis).

    Level 0 is the ground truth itself (ignored pixels become background; the metrics ignore them anyway). Above it,
    each image's free logit map (K, H/2**level, W/2**level) starts at the log of its cells' class fractions and takes
    ``steps`` Adam steps on ``surrogate_loss``; the result is read out by bilinear upsampling and argmax.
    """
    valid = masks != ignore_index
    if level == 0:
        return torch.where(valid, masks, 0)
    factor = 2**level
    size = tuple(masks.shape[1:])
    pool = F.avg_pool2d if len(size) == 2 else F.avg_pool3d
    chunk_size = CHUNK if len(size) == 2 else max(1, CHUNK // 16)  # volumes: fewer at once, each holds more voxels
    out = []
    for start in range(0, len(masks), chunk_size):
        chunk = masks[start : start + chunk_size]
        fractions = class_fractions(chunk, num_classes, ignore_index)
        cells = torch.log(pool(fractions, factor, factor).clamp_min(1e-4)).requires_grad_(True)
        optimizer = torch.optim.Adam([cells], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                surrogate_loss(read_out(cells, size), chunk, fractions, ignore_index).backward()
                optimizer.step()
        with torch.no_grad():
            out.append(read_out(cells, size).argmax(dim=1))
    return torch.cat(out) if out else masks.clone()


def cache_dir() -> Path:
    """Where floors are kept: ``$XDG_CACHE_HOME/unetlab/floors``, else ``~/.cache/unetlab/floors``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unetlab" / "floors"


def floor_key(masks: Tensor, level: int, num_classes: int, ignore_index: int) -> str:
    """A name for the floor of these masks at this level: a hash of the masks and of every setting it depends on."""
    digest = hashlib.sha256(masks.to(torch.int64).contiguous().numpy().tobytes())
    digest.update(repr((tuple(masks.shape), level, num_classes, ignore_index, FLOOR_STEPS, FLOOR_LR,
                        FLOOR_VERSION)).encode())  # fmt: skip
    return digest.hexdigest()[:32]


def cached_floor(
    masks: Tensor, level: int, num_classes: int, ignore_index: int = IGNORE_INDEX, directory: Path | None = None
) -> Tensor:
    """``resolution_floor`` of ``masks`` (N, H, W) at ``level``, computed once and then read from the cache."""
    if level == 0:
        return resolution_floor(masks, 0, num_classes, ignore_index)
    directory = cache_dir() if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"level{level}-{floor_key(masks.cpu(), level, num_classes, ignore_index)}.pt"
    with FileLock(path.with_suffix(".lock")):  # parallel jobs on one test split: one computes, the others wait
        if path.is_file():
            return torch.load(path, weights_only=True).long().to(masks.device)
        floor = resolution_floor(masks.cpu(), level, num_classes, ignore_index)
        replace_atomically(
            path, lambda tmp: torch.save(floor.to(torch.uint8 if num_classes <= 256 else torch.int64), tmp)
        )
    return floor.to(masks.device)
