"""Boundary metrics in physical units (``spacing=(sy, sx)``): MONAI, hand-drawn masks, a brute force."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from tests.test_metrics_functional import random_masks, ref_boundary
from unetlab.metrics import BoundaryMetrics, distance
from unetlab.metrics import functional as F

NAMES = F.METRIC_NAMES
SPACINGS = [(0.5, 0.25), (2.0, 1.0), (1.0, 3.0)]


# --- brute-force reference: SPEC section 4 with a pixel size, written out with loops and numpy --


def ref_erode_rectangle(mask: np.ndarray, radius_y: int, radius_x: int) -> np.ndarray:
    """Erosion by the (2ry+1)x(2rx+1) rectangle; outside the image is background."""
    height, width = mask.shape
    padded = np.zeros((height + 2 * radius_y, width + 2 * radius_x), dtype=bool)
    padded[radius_y : radius_y + height, radius_x : radius_x + width] = mask
    out = np.zeros_like(mask)
    for y in range(height):
        for x in range(width):
            out[y, x] = padded[y : y + 2 * radius_y + 1, x : x + 2 * radius_x + 1].all()
    return out


def ref_metrics(pred: np.ndarray, target: np.ndarray, tolerance: float, spacing: tuple[float, float]) -> dict:
    if not pred.any() and not target.any():
        return {"dice": 1, "iou": 1, "hd": 0, "hd95": 0, "assd": 0, "nsd": 1, "bf1": 1, "biou": 1}
    if not pred.any() or not target.any():
        inf = math.inf
        return {"dice": 0, "iou": 0, "hd": inf, "hd95": inf, "assd": inf, "nsd": 0, "bf1": 0, "biou": 0}
    scale = np.asarray(spacing)
    pairwise = cdist(np.argwhere(ref_boundary(pred)) * scale, np.argwhere(ref_boundary(target)) * scale)
    d_pt, d_tp = pairwise.min(axis=1), pairwise.min(axis=0)
    both = np.concatenate([d_pt, d_tp])
    # The tolerance is compared in float32, as unetlab and MONAI do: a distance equal to it up to
    # rounding (0.6 = 2 · 0.3 but 5 · 0.3 - 3 · 0.3 > 0.6 in float64) counts as within.
    within_pt, within_tp = (d.astype(np.float32) <= np.float32(tolerance) for d in (d_pt, d_tp))
    precision, recall = within_pt.mean(), within_tp.mean()
    height, width = pred.shape
    diagonal = math.hypot(height * spacing[0], width * spacing[1])
    k_y, k_x = (max(1, round(0.02 * diagonal / s)) for s in spacing)
    bands = [mask & ~ref_erode_rectangle(mask, k_y, k_x) for mask in (pred, target)]
    q95 = [torch.quantile(torch.tensor(d, dtype=torch.float32), 0.95).item() for d in (d_pt, d_tp)]
    return {
        "dice": 2 * (pred & target).sum() / (pred.sum() + target.sum()),
        "iou": (pred & target).sum() / (pred | target).sum(),
        "hd": max(d_pt.max(), d_tp.max()),
        "hd95": max(q95),
        "assd": both.mean(),
        "nsd": np.concatenate([within_pt, within_tp]).mean(),
        "bf1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        "biou": (bands[0] & bands[1]).sum() / (bands[0] | bands[1]).sum(),
    }


def far_apart_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A blob near one corner against a blob near the other: no partner within any window."""
    yy, xx = np.mgrid[:height, :width]
    radius = rng.uniform(1.0, 4.0)
    pred = (yy - rng.uniform(0, 6)) ** 2 + (xx - rng.uniform(0, 6)) ** 2 <= radius**2
    target = (yy - height + rng.uniform(1, 7)) ** 2 + (xx - width + rng.uniform(1, 7)) ** 2 <= radius**2
    return pred, target


@pytest.mark.parametrize("spacing", [*SPACINGS, (0.3, 0.7), (1.0, 0.1)])
@pytest.mark.parametrize("shape", [(1, 9), (17, 23), (40, 33)])
def test_matches_brute_force_with_spacing(shape, spacing):
    rng = np.random.default_rng(sum(shape) + int(10 * spacing[1]))
    pairs = [(random_masks(rng, *shape), random_masks(rng, *shape)) for _ in range(10)]
    pairs += [far_apart_pair(rng, *shape) for _ in range(3)]
    preds = torch.from_numpy(np.stack([p for p, _ in pairs]))
    targets = torch.from_numpy(np.stack([t for _, t in pairs]))
    tolerance = 2.0 * min(spacing)
    got = F.boundary_metrics(preds, targets, tolerance=tolerance, spacing=spacing)
    for i, (pred, target) in enumerate(pairs):
        want = ref_metrics(pred, target, tolerance, spacing)
        for name in NAMES:
            assert got[name][i].item() == pytest.approx(want[name], rel=1e-5, abs=1e-5), (i, name)


@pytest.mark.parametrize(
    ("radius", "chunk_elements", "column_cost"),
    [(0, 1 << 22, 16), (1, 7, 16), (2, 1 << 22, 0), (3, 7, 0), (3, 1 << 22, 1e9)],
)
@pytest.mark.parametrize("spacing", [(0.7, 0.3), (0.3, 0.7)])  # codes along y, along x
def test_every_search_path_gives_the_same_values_with_spacing(
    monkeypatch, radius, chunk_elements, column_cost, spacing
):
    rng = np.random.default_rng(4)
    pairs = [(random_masks(rng, 40, 40), random_masks(rng, 40, 40)) for _ in range(6)] + [far_apart_pair(rng, 40, 40)]
    preds = torch.from_numpy(np.stack([p for p, _ in pairs]))
    targets = torch.from_numpy(np.stack([t for _, t in pairs]))
    expected = F.boundary_metrics(preds, targets, spacing=spacing)
    searched = {"_pairwise_search_spaced": 0, "_column_search": 0}
    for name in searched:
        search = getattr(distance, name)

        def spy(*args, name=name, search=search):
            searched[name] += 1
            return search(*args)

        monkeypatch.setattr(distance, name, spy)
    monkeypatch.setattr(distance, "WINDOW_RADIUS", radius)
    monkeypatch.setattr(distance, "CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(distance, "COLUMN_SEARCH_COST", column_cost)
    again = F.boundary_metrics(preds, targets, spacing=spacing)
    assert searched["_column_search" if column_cost == 0 else "_pairwise_search_spaced"] > 0
    if column_cost > 1e6:
        assert searched["_column_search"] == 0
    for name in NAMES:
        torch.testing.assert_close(again[name], expected[name], rtol=0, atol=0)


def test_window_does_not_settle_a_pixel_nearer_outside_it():
    # sx = 0.1: the partner 6 columns away (0.6) is outside the 7x7 window and nearer than the one
    # 2 rows below (2.0) inside it; the settling threshold (4 · min(sy, sx))² = 0.16 sends it on.
    pred = torch.zeros(12, 16, dtype=torch.bool)
    target = pred.clone()
    pred[5, 5] = True
    target[7, 5] = target[5, 11] = True
    got = F.boundary_metrics(pred, target, tolerance=0.6, spacing=(1.0, 0.1))
    assert got["hd"].item() == pytest.approx(2.0)
    assert got["assd"].item() == pytest.approx((0.6 + 0.6 + 2.0) / 3)
    assert got["nsd"].item() == pytest.approx(2 / 3)


# --- hand-drawn masks with known physical distances ---------------------------------------------


@pytest.mark.parametrize(("axis", "spacing", "step"), [(0, (0.5, 1.0), 0.5), (1, (3.0, 2.0), 2.0)])
def test_squares_three_pixels_apart(axis, spacing, step):
    # As test_squares_shifted_by_three_pixels: with the other axis' pixels no smaller, every nearest
    # partner lies along the shift, so each distance is the pixel count times that axis' spacing
    # (3 px: 1.5 units along y with sy = 0.5, 6 along x with sx = 2).
    pred = torch.zeros(20, 30, dtype=torch.bool)
    pred[5:10, 5:10] = True
    target = torch.roll(pred, 3, dims=axis)
    got = F.boundary_metrics(pred, target, tolerance=2 * step, spacing=spacing)
    assert got["hd"].item() == pytest.approx(3 * step)
    assert got["hd95"].item() == pytest.approx(3 * step)
    assert got["assd"].item() == pytest.approx(step * (2 * (3 + 2 + 1) + 3 * 3 + 3 * 1) / 16)
    assert got["nsd"].item() == pytest.approx(11 / 16)
    assert got["bf1"].item() == pytest.approx(11 / 16)
    assert F.nsd(pred, target, tolerance=2 * step * 0.99, spacing=spacing).item() == pytest.approx(9 / 16)
    assert got["dice"].item() == pytest.approx(2 * 10 / 50)


def test_pixels_at_a_diagonal_offset():
    pred = torch.zeros(10, 10, dtype=torch.bool)
    target = pred.clone()
    pred[1, 2] = True
    target[4, 6] = True  # (dy, dx) = (3, 4)
    spacing = (2.0, 0.5)
    want = math.hypot(3 * 2.0, 4 * 0.5)
    for name in ("hd", "hd95", "assd"):
        assert getattr(F, name)(pred, target, spacing=spacing).item() == pytest.approx(want)
    assert F.nsd(pred, target, tolerance=want + 1e-6, spacing=spacing).item() == 1.0
    assert F.bf1(pred, target, tolerance=want - 1e-3, spacing=spacing).item() == 0.0


# --- MONAI ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the (prediction|ground truth) of class:UserWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("shape", [(32, 48), (64, 64), (100, 80)])
def test_distance_metrics_match_monai_with_spacing(shape, spacing):
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(sum(shape))
    preds = torch.from_numpy(np.stack([random_masks(rng, *shape) for _ in range(10)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, *shape) for _ in range(10)]))
    tolerance = 2.0
    ours = F.boundary_metrics(preds, targets, tolerance=tolerance, spacing=spacing)
    y_pred, y = preds[:, None].float(), targets[:, None].float()
    common = {"include_background": True, "spacing": spacing}
    theirs = {
        "hd": monai_metrics.compute_hausdorff_distance(y_pred, y, **common),
        "hd95": monai_metrics.compute_hausdorff_distance(y_pred, y, percentile=95, **common),
        "assd": monai_metrics.compute_average_surface_distance(y_pred, y, symmetric=True, **common),
        "nsd": monai_metrics.compute_surface_dice(y_pred, y, class_thresholds=[tolerance], **common),
    }
    compared = 0
    for name, values in theirs.items():
        values = values[:, 0]
        finite = torch.isfinite(values)
        compared += int(finite.sum())
        torch.testing.assert_close(ours[name][finite], values[finite].float(), rtol=1e-5, atol=1e-5)
    assert compared >= 20


# --- Boundary IoU band per axis ------------------------------------------------------------------


def test_biou_band_width_is_taken_per_axis():
    assert F.band_widths(400, 400) == (F.band_width(400, 400),) * 2 == (11, 11)
    # Physical diagonal hypot(400, 1600) = 1649.2: 33 rows (sy = 1) but 8 columns (sx = 4) of band.
    assert F.band_widths(400, 400, (1.0, 4.0)) == (33, 8)
    assert F.band_widths(10, 10, (1.0, 100.0)) == (20, 1)  # at least one pixel along each axis
    pred = np.zeros((400, 400), dtype=bool)
    pred[100:200, 100:180] = True
    target = np.roll(pred, 2, axis=1)

    def band_iou(k_y: int, k_x: int) -> float:
        bands = []
        for mask in (pred, target):
            ys, xs = np.nonzero(mask)
            inner = np.zeros_like(mask)
            inner[ys.min() + k_y : ys.max() - k_y + 1, xs.min() + k_x : xs.max() - k_x + 1] = True
            bands.append(mask & ~inner)
        return (bands[0] & bands[1]).sum() / (bands[0] | bands[1]).sum()

    got = F.biou(torch.from_numpy(pred), torch.from_numpy(target), spacing=(1.0, 4.0)).item()
    assert got == pytest.approx(band_iou(33, 8))
    assert abs(band_iou(33, 8) - band_iou(33, 33)) > 0.01 and abs(band_iou(33, 8) - band_iou(8, 8)) > 0.01
    # Isotropic pixels of any size keep the pixel band of the unit case.
    unit = F.biou(torch.from_numpy(pred), torch.from_numpy(target)).item()
    assert F.biou(torch.from_numpy(pred), torch.from_numpy(target), spacing=(0.37, 0.37)).item() == unit
    assert unit == pytest.approx(band_iou(11, 11))


# --- unit spacing, bad spacing ---------------------------------------------------------------------


def test_unit_spacing_is_the_default_and_isotropic_spacing_scales_distances():
    rng = np.random.default_rng(9)
    preds = torch.from_numpy(np.stack([random_masks(rng, 30, 41) for _ in range(8)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, 30, 41) for _ in range(8)]))
    default = F.boundary_metrics(preds, targets)
    unit = F.boundary_metrics(preds, targets, spacing=(1, 1))
    scaled = F.boundary_metrics(preds, targets, tolerance=5.0, spacing=(2.5, 2.5))
    for name in NAMES:
        torch.testing.assert_close(unit[name], default[name], rtol=0, atol=0)
        if name in F.DISTANCE_METRICS:
            torch.testing.assert_close(scaled[name], 2.5 * default[name], rtol=1e-6, atol=1e-6)
        else:
            torch.testing.assert_close(scaled[name], default[name], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "spacing", [(0.0, 1.0), (1.0, -2.0), (math.nan, 1.0), (1.0, math.inf), (1.0,), (1, 2, 3), "ab"]
)
def test_bad_spacing_is_refused(spacing):
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[2:4, 2:4] = True
    for call in (F.boundary_metrics, F.hd, F.hd95, F.assd, F.nsd, F.bf1, F.biou):
        with pytest.raises(ValueError, match=r"spacing=.*pixel size \(sy, sx\)"):
            call(mask, mask, spacing=spacing)
    with pytest.raises(ValueError, match="spacing="):
        BoundaryMetrics(num_classes=2, spacing=spacing)


# --- BoundaryMetrics --------------------------------------------------------------------------------


def test_boundary_metrics_class_with_spacing_equals_functional_and_fills_the_physical_diagonal():
    spacing = (0.5, 3.0)
    target = torch.zeros(3, 30, 40, dtype=torch.long)
    target[:, 5:12, 5:14] = 1
    pred = torch.roll(target, shifts=(1, 2), dims=(1, 2))
    pred[0, 20:25, 30:35] = 2  # class 2 only in the prediction of image 0
    pred[1, 22:24, 3:9] = 1
    metric = BoundaryMetrics(3, 1.5, 255, spacing=spacing)
    metric.update(pred, target)
    got = metric.compute()
    functional = F.boundary_metrics(pred == 1, target == 1, tolerance=1.5, spacing=spacing)
    for name in NAMES:
        assert got[f"{name}/1"].item() == pytest.approx(functional[name].mean().item(), rel=1e-6), name
    diagonal = math.hypot(30 * 0.5, 40 * 3.0)
    assert F.image_diagonal(30, 40, spacing) == diagonal
    for name in F.DISTANCE_METRICS:
        assert got[f"{name}/2"].item() == pytest.approx(diagonal / 3)  # images 1, 2: both empty -> 0
    assert got["empty_rate/2"].item() == pytest.approx(1 / 3)
    assert metric.per_image_values()[0, 1, NAMES.index("hd")].item() == pytest.approx(diagonal)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_with_spacing():
    rng = np.random.default_rng(5)
    pairs = [(random_masks(rng, 64, 80), random_masks(rng, 64, 80)) for _ in range(8)] + [far_apart_pair(rng, 64, 80)]
    preds = torch.from_numpy(np.stack([p for p, _ in pairs]))
    targets = torch.from_numpy(np.stack([t for _, t in pairs]))
    on_cpu = F.boundary_metrics(preds, targets, spacing=(0.5, 0.25))
    on_gpu = F.boundary_metrics(preds.cuda(), targets.cuda(), spacing=(0.5, 0.25))
    for name in NAMES:
        assert on_gpu[name].device.type == "cuda"
        torch.testing.assert_close(on_gpu[name].cpu(), on_cpu[name], rtol=1e-6, atol=1e-6)
