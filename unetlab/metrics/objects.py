"""Per-object boundary metrics: every ground-truth object matched to a predicted one (``docs/metrics.md``).

An *object* is a connected component of a binary mask, 4-connected (``scipy.ndimage.label`` with the cross). A
ground-truth object is *detected* when some predicted component overlaps it with IoU >= 0.5 (at that threshold at
most one predicted component can match it, bar an exact tie, which goes to the first); its ``hd95`` and ``assd`` are
then those of the pair of components taken on their own (``unetlab.metrics.functional``: the same boundaries and
exact distances, with the same ``spacing``). A missed object has no distances (NaN). An object split in two halves,
or two objects merged into one predicted blob, match nothing at IoU >= 0.5: both count as missed. A predicted
component that shares no pixel with any ground-truth object is *spurious* (a false positive), binned by its own
equivalent diameter.

Its size is the *equivalent diameter* ``2 sqrt(area / pi)``, area in physical units (pixels times ``sy * sx``), so a
disc of radius r has diameter 2r up to the pixel grid.

Volumes (``spatial_dims=3``): objects are 6-connected components, and the equivalent diameter is the ball's,
``2 (3 volume / (4 pi))^(1/3)``, volume in physical units (voxels times ``sz * sy * sx``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from unetlab.metrics.functional import Spacing, _run, check_spacing

MATCH_IOU = 0.5  # a ground-truth object counts as detected by a predicted component with IoU >= this
OBJECT_BINS = (4.0, 8.0, 16.0, 32.0)  # px of equivalent diameter: the cell sizes of levels 2..5


def stacked_cross(spatial_dims: int) -> np.ndarray:
    """The 4-connected (6-connected in 3D) cross in each image of a batch: no connection along the batch axis."""
    cross = ndimage.generate_binary_structure(spatial_dims, 1)
    return np.stack([np.zeros_like(cross), cross, np.zeros_like(cross)])


def equivalent_diameter(size: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Diameter of the disc of physical area ``size`` (2D) or of the ball of physical volume ``size`` (3D)."""
    if spatial_dims == 2:
        return 2 * np.sqrt(size / math.pi)
    return 2 * np.cbrt(3 * size / (4 * math.pi))


def object_metrics(pred: Tensor, target: Tensor, spacing: Spacing = None, spatial_dims: int = 2) -> dict[str, Tensor]:
    """Every ground-truth object of a batch of binary masks, matched to the predicted components of its image.

    Args:
        pred, target: bool (N, H, W) or (H, W); volumes (``spatial_dims=3``): (N, D, H, W) or (D, H, W).
        spacing: pixel size ``(sy, sx)`` (voxel size ``(sz, sy, sx)``); diameters and distances in its unit.
        spatial_dims: 2 or 3.

    Returns:
        per object (K,), in image order and, within an image, in ``scipy.ndimage.label``'s order (raster order of
        each object's first pixel): ``image`` int64 (0 for (H, W) input), ``diameter`` float64, ``iou`` float64 (of
        the best-overlapping predicted component, 0 if none), ``detected`` bool, ``hd95`` and ``assd`` float64
        (NaN where not detected); and per *spurious* blob (a predicted component that shares no pixel with any
        ground-truth object: a false positive) ``spurious_image`` int64 and ``spurious_diameter`` float64. On the
        CPU.
    """
    spacing = check_spacing(spacing, spatial_dims)
    if pred.shape != target.shape or pred.ndim not in (spatial_dims, spatial_dims + 1):
        shapes = "(N, H, W) or (H, W)" if spatial_dims == 2 else "(N, D, H, W) or (D, H, W)"
        raise ValueError(f"expected pred and target bool {shapes}, got {tuple(pred.shape)}, {tuple(target.shape)}")
    if pred.dtype != torch.bool or target.dtype != torch.bool:
        raise TypeError(f"pred and target must be bool masks, got {pred.dtype} and {target.dtype}")
    preds = pred.reshape(-1, *pred.shape[-spatial_dims:]).cpu().numpy()
    targets = target.reshape(-1, *target.shape[-spatial_dims:]).cpu().numpy()
    structure = stacked_cross(spatial_dims)
    cell = math.prod(spacing)  # physical area (volume) of one pixel (voxel)
    # One labelling per batch: components never cross images (no connectivity along the batch axis), so labels
    # are unique over the batch and numbered image by image.
    truth, objects = ndimage.label(targets, structure=structure)
    blobs, count = ndimage.label(preds, structure=structure)
    truth_area = np.bincount(truth.ravel(), minlength=objects + 1)
    blob_area = np.bincount(blobs.ravel(), minlength=count + 1)
    # Overlaps of every (object, blob) pair that shares a pixel; a blob matches at IoU >= 0.5 only if it overlaps.
    both = (truth > 0) & (blobs > 0)
    pairs, overlap = np.unique(truth[both].astype(np.int64) * (count + 1) + blobs[both], return_counts=True)
    pair_truth, pair_blob = pairs // (count + 1), pairs % (count + 1)
    pair_iou = overlap / (truth_area[pair_truth] + blob_area[pair_blob] - overlap)
    # The best blob of each object: the highest IoU, an exact tie to the lower blob label.
    order = np.lexsort((pair_blob, -pair_iou, pair_truth))
    firsts = order[np.unique(pair_truth[order], return_index=True)[1]]
    best_iou, best_blob = np.zeros(objects + 1), np.zeros(objects + 1, dtype=np.int64)
    best_iou[pair_truth[firsts]], best_blob[pair_truth[firsts]] = pair_iou[firsts], pair_blob[firsts]
    best_iou, best_blob = best_iou[1:], best_blob[1:]
    truth_boxes = ndimage.find_objects(truth)
    blob_boxes = ndimage.find_objects(blobs)
    # Spurious blobs: predicted components that share no pixel with any ground-truth object (false positives)
    spurious = np.setdiff1d(np.arange(1, count + 1), pair_blob)
    spurious_image = np.array([blob_boxes[b - 1][0].start for b in spurious], dtype=np.int64)
    spurious_diameter = equivalent_diameter(blob_area[spurious] * cell, spatial_dims)
    image = np.array([box[0].start for box in truth_boxes], dtype=np.int64)
    diameter = equivalent_diameter(truth_area[1:] * cell, spatial_dims)
    detected = best_iou >= MATCH_IOU
    hd95 = torch.full((objects,), math.nan, dtype=torch.float64)
    assd = hd95.clone()
    matched = np.flatnonzero(detected)
    if len(matched):
        crops_pred, crops_target = _pair_crops(truth, blobs, truth_boxes, blob_boxes, matched, best_blob)
        values = _run(crops_pred, crops_target, ("hd95", "assd"), spacing=spacing, spatial_dims=spatial_dims)
        hd95[matched], assd[matched] = values["hd95"].double(), values["assd"].double()
    return {
        "image": torch.from_numpy(image),
        "diameter": torch.from_numpy(diameter.astype(np.float64)),
        "iou": torch.from_numpy(best_iou),
        "detected": torch.from_numpy(detected),
        "hd95": hd95,
        "assd": assd,
        "spurious_image": torch.from_numpy(spurious_image),
        "spurious_diameter": torch.from_numpy(spurious_diameter.astype(np.float64)),
    }


def bin_edges(bins: Sequence[float] = OBJECT_BINS, spacing: Spacing = None, spatial_dims: int = 2) -> tuple[float, ...]:
    """Bin edges of equivalent diameter in ``spacing``'s unit: ``bins`` (in px, increasing, > 0) times the side of a
    pixel-area square, ``sqrt(sy * sx)`` (of a voxel-volume cube, ``cbrt(sz * sy * sx)``, in 3D)."""
    spacing = check_spacing(spacing, spatial_dims)
    side = math.prod(spacing) ** (1 / len(spacing))
    values = [float(edge) for edge in bins]
    if not values or any(not 0 < v < math.inf for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(
            f"object bins {list(bins)!r}: expected increasing positive numbers of px (e.g. [4, 8, 16, 32])"
        )
    return tuple(edge * side for edge in values)


def bin_names(edges: Sequence[float]) -> tuple[str, ...]:
    """``(4, 8, 16, 32)`` -> ``("0-4", "4-8", "8-16", "16-32", "32+")``: one name per bin, edges as ``%.3g``."""
    labels = [f"{edge:.3g}" for edge in edges]
    return (f"0-{labels[0]}", *(f"{a}-{b}" for a, b in zip(labels, labels[1:])), f"{labels[-1]}+")


def bin_index(diameter: Tensor, edges: Sequence[float]) -> Tensor:
    """The bin of each diameter (K,): 0 below the first edge, ``len(edges)`` at or above the last."""
    return torch.bucketize(diameter, torch.tensor(edges, dtype=diameter.dtype), right=True)


def _pair_crops(
    truth: np.ndarray,
    blobs: np.ndarray,
    truth_boxes: list,
    blob_boxes: list,
    matched: np.ndarray,
    best_blob: np.ndarray,
) -> tuple[Tensor, Tensor]:
    """The matched (blob, object) pairs, each cropped to the box around both and zero-padded to the largest box, as
    bool (K, h, w) (volumes: (K, d, h, w)) tensors (pred, target). A crop keeps every boundary: outside the pair is
    background anyway, and distances do not depend on where the pair sits."""
    boxes = []
    for k in matched:
        a, b = truth_boxes[k], blob_boxes[best_blob[k] - 1]
        boxes.append(tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a[1:], b[1:])))
    largest = [max(box[axis].stop - box[axis].start for box in boxes) for axis in range(truth.ndim - 1)]
    crops = np.zeros((2, len(matched), *largest), dtype=bool)
    for i, (k, box) in enumerate(zip(matched, boxes)):
        n = truth_boxes[k][0].start
        inside = (i, *(slice(0, axis.stop - axis.start) for axis in box))
        crops[0][inside] = blobs[(n, *box)] == best_blob[k]
        crops[1][inside] = truth[(n, *box)] == k + 1
    return torch.from_numpy(crops[0]), torch.from_numpy(crops[1])
