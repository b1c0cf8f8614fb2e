"""torchmetrics wrappers: boundary metrics and per-object metrics over multi-class label maps, synced under DDP."""

import math
import weakref

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from unetlab.conventions import IGNORE_INDEX
from unetlab.metrics.functional import (
    DISTANCE_METRICS,
    METRIC_NAMES,
    TOLERANCE_METRICS,
    Spacing,
    boundary_metrics,
    check_spacing,
    check_tolerances,
    diagonal,
    tolerance_name,
)
from unetlab.metrics.objects import OBJECT_BINS, bin_edges, bin_index, bin_names, object_metrics

# Columns of the per-image summary: the eight metrics, then the "exactly one empty" flag.
COLUMNS = (*METRIC_NAMES, "empty_rate")


class BoundaryMetrics(Metric):
    """Per-class boundary metrics (``dice, iou, hd, hd95, assd, nsd, bf1, biou``) over label maps.

    For every image and every foreground class ``c`` in ``1..C-1`` (class 0, the background, is
    left out) the binary masks ``pred == c`` and ``target == c`` are scored with
    ``unetlab.metrics.functional.boundary_metrics``; pixels where ``target == ignore_index`` are
    cleared in both masks first.

    Empty masks follow ``docs/metrics.md``: a class absent from both prediction and target in an image
    counts as a perfect match (distances 0, the rest 1), and it is counted. A class in exactly one
    of them has ``inf`` distances, which are replaced here by the image diagonal
    ``sqrt((H·sy)² + (W·sx)²)`` (the worst possible value; ``sqrt(H² + W²)`` for unit pixels) so that
    means stay finite; ``empty_rate`` reports the fraction of images where that happened, beside the
    metrics. Volumes (``spatial_dims=3``): label maps (N, D, H, W), voxel size ``(sz, sy, sx)``, the volume's
    diagonal as the fill, every image above read as volume.

    State: one float32 ``(N, C-1, 9)`` summary per batch (eight metrics and the empty flag per
    image and class), a list state reduced with ``"cat"``; never raw masks. All images weigh the
    same, so the values under DDP equal those of one process over the same images.

    Args:
        num_classes: ``C``, including the background class 0.
        tolerance: tolerance of ``nsd`` and ``bf1``, in the unit of ``spacing`` (pixels by default).
        ignore_index: target label left out of every mask.
        spacing: pixel size ``(sy, sx)`` (voxel size ``(sz, sy, sx)``), positive; distances (and the diagonal fill)
            are physical, ``sqrt((dy·sy)² + (dx·sx)²)``, in its unit; None: 1 along every axis.
        tolerances: more tolerances (same unit) at which ``nsd`` and ``bf1`` are computed in the same pass, kept
            in a second state (``tolerance_values``, columns ``tolerance_columns``: ``nsd@τ``, ``bf1@τ`` per τ).
        spatial_dims: 2 (images) or 3 (volumes).
        kwargs: passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        tolerance: float = 2.0,
        ignore_index: int = IGNORE_INDEX,
        spacing: Spacing = None,
        tolerances: tuple[float, ...] = (),
        spatial_dims: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}, but boundary metrics need a background and a class (>= 2)")
        self.spacing = check_spacing(spacing, spatial_dims)
        self.spatial_dims = spatial_dims
        self.num_classes = num_classes
        self.tolerance = tolerance
        self.tolerances = check_tolerances(tolerances)
        self.tolerance_columns = tuple(
            tolerance_name(name, tau) for tau in self.tolerances for name in TOLERANCE_METRICS
        )  # fmt: skip
        self.ignore_index = ignore_index
        self.add_state("per_image", default=[], dist_reduce_fx="cat")
        self.add_state("per_tolerance", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Scores one batch.

        Args:
            preds: int label map (N, H, W), or logits (N, C, H, W) reduced by argmax over dim 1; volumes: (N, D, H, W)
                or (N, C, D, H, W).
            target: int label map (N, H, W) (volumes: (N, D, H, W)) with values in ``0..C-1`` or ``ignore_index``.
        """
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        check_label_maps(preds, target, self.num_classes, self.ignore_index, self.spatial_dims)
        num_images, *shape = target.shape
        valid = target != self.ignore_index
        classes = torch.arange(1, self.num_classes, device=target.device).view(1, -1, *(1,) * len(shape))
        pred_masks = (preds[:, None] == classes) & valid[:, None]  # (N, C-1, *spatial)
        target_masks = (target[:, None] == classes) & valid[:, None]
        summary = torch.zeros(num_images, self.num_classes - 1, len(COLUMNS), device=target.device)
        summary[..., : len(METRIC_NAMES)] = self._perfect(target.device)
        # nsd and bf1 at every tolerance: 1 where the class is absent from both masks
        swept = torch.ones(num_images, self.num_classes - 1, len(self.tolerance_columns), device=target.device)
        # Only (image, class) pairs with some foreground need work; the rest stay perfect.
        present = (pred_masks | target_masks).flatten(2).any(dim=2)
        if present.any():
            values = boundary_metrics(
                pred_masks[present], target_masks[present], self.tolerance, self.spacing, self.tolerances,
                spatial_dims=self.spatial_dims,
            )  # fmt: skip
            scores = torch.stack([values[name] for name in METRIC_NAMES], dim=1)
            one_empty = torch.isinf(values["hd"])
            scores = torch.where(torch.isinf(scores), diagonal(shape, self.spacing), scores)
            summary[present] = torch.cat([scores, one_empty[:, None].float()], dim=1)
            if self.tolerance_columns:
                swept[present] = torch.stack([values[name] for name in self.tolerance_columns], dim=1)
        self.per_image.append(summary)
        self.per_tolerance.append(swept)

    def compute(self) -> dict[str, Tensor]:
        """Scalar tensors: ``"{metric}/{c}"`` (mean over images) for each foreground class ``c``,
        ``"{metric}"`` (mean over the classes, NaN-aware), for the eight metrics and
        ``empty_rate``."""
        per_class = self._values().mean(dim=0)  # (C-1, 9)
        results = {}
        for column, name in enumerate(COLUMNS):
            results[name] = per_class[:, column].nanmean()
            for index in range(self.num_classes - 1):
                results[f"{name}/{index + 1}"] = per_class[index, column]
        return results

    def summary(self) -> list[dict]:
        """Rows for a results table, one per metric and class (``"1"``, ..., ``"mean"``).

        ``value`` and ``std`` are the mean and the population standard deviation (ddof 0, defined
        for a single image) over the ``n`` images, after the ``inf`` rule; ``empty_rate`` is the
        fraction of those images where exactly one of prediction and target was empty. For class
        ``"mean"`` each image is first averaged over the foreground classes (and ``empty_rate``
        is over all image-class pairs). Synced across processes like ``compute``.
        """
        values = self.per_image_values()
        groups = {str(index + 1): values[:, index] for index in range(self.num_classes - 1)}
        groups["mean"] = values.mean(dim=1)
        rows = []
        for column, name in enumerate(METRIC_NAMES):
            for class_, per_image in groups.items():
                rows.append(
                    {
                        "metric": name,
                        "class": class_,
                        "value": per_image[:, column].mean().item(),
                        "std": per_image[:, column].std(correction=0).item(),
                        "n": per_image.shape[0],
                        "empty_rate": per_image[:, -1].mean().item(),
                    }
                )
        return rows

    def per_image_values(self) -> Tensor:
        """Every image's summary, synced across processes: (M, C-1, 9) float64 on the CPU, columns ``COLUMNS`` (the
        eight metrics after the ``inf`` rule, then 1.0 where exactly one of prediction and target was empty)."""
        with self.sync_context():
            return self._values().double().cpu()

    def tolerance_values(self) -> Tensor:
        """Every image's ``nsd`` and ``bf1`` at each of ``tolerances``, synced across processes: (M, C-1, 2T) float64
        on the CPU, columns ``tolerance_columns`` (1 where the class is absent from both masks, 0 where from one)."""
        with self.sync_context():
            if isinstance(self.per_tolerance, list) and not self.per_tolerance:
                return torch.zeros(0, self.num_classes - 1, len(self.tolerance_columns), dtype=torch.float64)
            return dim_zero_cat(self.per_tolerance).double().cpu()

    def _values(self) -> Tensor:
        """All per-image summaries, (M, C-1, 9); empty before the first update."""
        if isinstance(self.per_image, list) and not self.per_image:
            return torch.zeros(0, self.num_classes - 1, len(COLUMNS), device=self.device)
        return dim_zero_cat(self.per_image)

    @staticmethod
    def _perfect(device: torch.device) -> Tensor:
        """Metric values of a class absent from both masks: 0 for distances, 1 otherwise."""
        return torch.tensor([0.0 if name in DISTANCE_METRICS else 1.0 for name in METRIC_NAMES], device=device)


def check_label_maps(preds: Tensor, target: Tensor, num_classes: int, ignore_index: int, spatial_dims: int = 2) -> None:
    """ValueError/TypeError unless preds and target are integer label maps (N, H, W) (volumes: (N, D, H, W)) of
    labels 0..C-1 (target: or ``ignore_index``)."""
    if preds.shape != target.shape or target.ndim != spatial_dims + 1:
        maps = "(N, H, W)" if spatial_dims == 2 else "(N, D, H, W)"
        raise ValueError(
            f"expected preds {maps} or logits (N, C, {maps[4:]} and target {maps}, got "
            f"preds {tuple(preds.shape)} and target {tuple(target.shape)}"
        )
    for name, labels in (("preds", preds), ("target", target)):
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer label map, got dtype {labels.dtype}")
    if preds.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(preds))
    if low < 0 or high >= num_classes:
        raise ValueError(f"preds holds labels {low}..{high}, outside 0..{num_classes - 1}")
    # Inference tensors (Lightning's val and test steps) keep no version counter: checked every time.
    key = None if target.is_inference() else (target._version, num_classes, ignore_index)
    last = _checked_target[0]
    if key is not None and last is not None and last[0]() is target and last[1:] == key:
        return  # the same, unchanged masks again: every source of an evaluation batch scores against them
    labels = target[target != ignore_index]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"target holds labels {int(labels.min())}..{int(labels.max())}, outside "
            f"0..{num_classes - 1} (ignore_index {ignore_index} aside)"
        )
    if key is not None:
        _checked_target[0] = (weakref.ref(target), *key)


_checked_target: list[tuple | None] = [None]  # (a weak reference to the target last found valid, its version, ...)


# Per image, class and size bin of ObjectMetrics: sums over that image's ground-truth objects.
# ``spurious``: the predicted components of that size that share no pixel with any ground-truth object.
OBJECT_COLUMNS = ("objects", "detected", "hd95", "assd", "hd95_sq", "assd_sq", "spurious")


class ObjectMetrics(Metric):
    """Per-object metrics by object size over label maps: for every foreground class ``c`` the ground-truth objects
    (4-connected components of ``target == c``) are matched to the components of ``pred == c``
    (``unetlab.metrics.objects.object_metrics``: detected at IoU >= 0.5, ``hd95`` and ``assd`` of the matched pair),
    and binned by equivalent diameter (``bins`` in px, times ``sqrt(sy * sx)``; names ``bin_names``, e.g. ``0-4`` ...
    ``32+``). Pixels where ``target == ignore_index`` are cleared in both masks first.

    State: one float64 ``(N, C-1, B, 7)`` per batch, per image, class and bin the sums ``OBJECT_COLUMNS`` (objects,
    detected, hd95 and assd over the detected ones, their squares, and the spurious predicted components of that
    size: false positives), a list state reduced with ``"cat"``; image
    order is kept, as in ``BoundaryMetrics``, so the two can share bootstrap resamples.

    Args:
        num_classes: ``C``, including the background class 0.
        ignore_index: target label left out of every mask.
        spacing: pixel size ``(sy, sx)`` (voxel size ``(sz, sy, sx)``); diameters and distances in its unit.
        bins: bin edges in px of equivalent diameter (increasing): ``B = len(bins) + 1`` bins.
        spatial_dims: 2 (images; 4-connected objects) or 3 (volumes, (N, D, H, W) label maps; 6-connected objects,
            the diameter of the ball of the same volume).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        spacing: Spacing = None,
        bins: tuple[float, ...] = OBJECT_BINS,
        spatial_dims: int = 2,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}, but object metrics need a background and a class (>= 2)")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.spacing = check_spacing(spacing, spatial_dims)
        self.spatial_dims = spatial_dims
        self.edges = bin_edges(bins, self.spacing, spatial_dims)
        self.bin_names = bin_names(self.edges)
        self.add_state("per_image", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Scores one batch: preds and target int label maps (N, H, W) (or logits (N, C, H, W) as preds); volumes
        (N, D, H, W)."""
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        check_label_maps(preds, target, self.num_classes, self.ignore_index, self.spatial_dims)
        valid = target != self.ignore_index
        sums = torch.zeros(
            len(target), self.num_classes - 1, len(self.bin_names), len(OBJECT_COLUMNS), dtype=torch.float64
        )
        for c in range(1, self.num_classes):
            found = object_metrics((preds == c) & valid, (target == c) & valid, self.spacing, self.spatial_dims)
            detected = found["detected"].double()
            hd95, assd = found["hd95"].nan_to_num(0.0), found["assd"].nan_to_num(0.0)
            spurious = torch.zeros_like(detected)
            columns = torch.stack([torch.ones_like(detected), detected, hd95, assd, hd95**2, assd**2, spurious], dim=1)
            flat = found["image"] * len(self.bin_names) + bin_index(found["diameter"], self.edges)
            per_cell = torch.zeros(len(target) * len(self.bin_names), len(OBJECT_COLUMNS), dtype=torch.float64)
            per_cell.index_add_(0, flat, columns)
            blobs = found["spurious_image"] * len(self.bin_names) + bin_index(found["spurious_diameter"], self.edges)
            per_cell[:, -1].index_add_(0, blobs, torch.ones(len(blobs), dtype=torch.float64))
            sums[:, c - 1] = per_cell.view(len(target), len(self.bin_names), -1)
        self.per_image.append(sums.to(self.device))

    def compute(self) -> dict[str, Tensor]:
        """Scalars over all foreground classes' objects: ``detected/<bin>`` (the fraction detected), ``hd95/<bin>``
        and ``assd/<bin>`` (means over the detected objects); NaN for a bin without objects."""
        totals = self._values().sum(dim=(0, 1))  # (B, 6)
        results = {}
        for b, name in enumerate(self.bin_names):
            objects, detected, hd95, assd = totals[b, :4]
            results[f"detected/{name}"] = detected / objects if objects else torch.tensor(math.nan)
            results[f"hd95/{name}"] = hd95 / detected if detected else torch.tensor(math.nan)
            results[f"assd/{name}"] = assd / detected if detected else torch.tensor(math.nan)
        return results

    def per_image_values(self) -> Tensor:
        """Every image's sums, synced across processes: (M, C-1, B, 7) float64 on the CPU (``OBJECT_COLUMNS``)."""
        with self.sync_context():
            return self._values().double().cpu()

    def _values(self) -> Tensor:
        if isinstance(self.per_image, list) and not self.per_image:
            return torch.zeros(0, self.num_classes - 1, len(self.bin_names), len(OBJECT_COLUMNS), dtype=torch.float64)
        return dim_zero_cat(self.per_image)
