"""unetlab.metrics.functional against a brute-force reference, hand-drawn masks and MONAI."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from unetlab.metrics import distance
from unetlab.metrics import functional as F

NAMES = ("dice", "iou", "hd", "hd95", "assd", "nsd", "bf1", "biou")


# --- brute-force reference: SPEC section 4 written out with loops and numpy --------------------


def ref_boundary(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    out = np.zeros_like(mask)
    for y in range(height):
        for x in range(width):
            if not mask[y, x]:
                continue
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if not (0 <= ny < height and 0 <= nx < width) or not mask[ny, nx]:
                    out[y, x] = True
    return out


def ref_erode_square(mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    out = np.zeros_like(mask)
    for y in range(height):
        for x in range(width):
            out[y, x] = all(
                0 <= y + dy < height and 0 <= x + dx < width and mask[y + dy, x + dx]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            )
    return out


def ref_metrics(pred: np.ndarray, target: np.ndarray, tolerance: float = 2.0) -> dict[str, float]:
    if not pred.any() and not target.any():
        return {"dice": 1, "iou": 1, "hd": 0, "hd95": 0, "assd": 0, "nsd": 1, "bf1": 1, "biou": 1}
    if not pred.any() or not target.any():
        inf = math.inf
        return {"dice": 0, "iou": 0, "hd": inf, "hd95": inf, "assd": inf, "nsd": 0, "bf1": 0, "biou": 0}
    pred_points = np.argwhere(ref_boundary(pred))
    target_points = np.argwhere(ref_boundary(target))
    pairwise = cdist(pred_points, target_points)
    d_pt, d_tp = pairwise.min(axis=1), pairwise.min(axis=0)
    both = np.concatenate([d_pt, d_tp])
    precision, recall = np.mean(d_pt <= tolerance), np.mean(d_tp <= tolerance)
    height, width = pred.shape
    k = max(1, round(0.02 * math.sqrt(height**2 + width**2)))
    bands = []
    for mask in (pred, target):
        eroded = mask
        for _ in range(k):
            eroded = ref_erode_square(eroded)
        bands.append(mask & ~eroded)
    q95 = [torch.quantile(torch.tensor(d, dtype=torch.float32), 0.95).item() for d in (d_pt, d_tp)]
    return {
        "dice": 2 * (pred & target).sum() / (pred.sum() + target.sum()),
        "iou": (pred & target).sum() / (pred | target).sum(),
        "hd": max(d_pt.max(), d_tp.max()),
        "hd95": max(q95),
        "assd": both.mean(),
        "nsd": np.mean(both <= tolerance),
        "bf1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        "biou": (bands[0] & bands[1]).sum() / (bands[0] | bands[1]).sum(),
    }


def assert_matches_reference(pred: np.ndarray, target: np.ndarray, tolerance: float = 2.0) -> None:
    got = F.boundary_metrics(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], tolerance)
    want = ref_metrics(pred, target, tolerance)
    for name in NAMES:
        assert got[name].shape == (1,)
        assert got[name][0].item() == pytest.approx(want[name], rel=1e-5, abs=1e-5), name


# --- random masks ------------------------------------------------------------------------------


def random_masks(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise of random density, or a few rectangles and discs (far-apart parts use the brute force)."""
    if rng.random() < 0.4:
        return rng.random((height, width)) < rng.uniform(0.02, 0.6)
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(rng.integers(0, 4)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.5, max(1.0, max(height, width) / 3))
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (5, 3), (16, 16), (23, 41), (48, 19)])
def test_matches_brute_force_on_random_masks(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(12):
        assert_matches_reference(random_masks(rng, *shape), random_masks(rng, *shape))


def test_batch_equals_single_images_and_tolerance_is_used():
    rng = np.random.default_rng(7)
    preds = np.stack([random_masks(rng, 30, 44) for _ in range(10)])
    targets = np.stack([random_masks(rng, 30, 44) for _ in range(10)])
    preds[3] = False
    targets[4] = False
    preds[5] = targets[5] = False
    for tolerance in (0.0, 1.5, 4.0):
        got = F.boundary_metrics(torch.from_numpy(preds), torch.from_numpy(targets), tolerance)
        for i in range(10):
            want = ref_metrics(preds[i], targets[i], tolerance)
            for name in NAMES:
                assert got[name][i].item() == pytest.approx(want[name], rel=1e-5, abs=1e-5), (i, name)


@pytest.mark.parametrize(
    ("radius", "chunk_elements", "column_cost"),
    [(0, 1 << 22, 16), (1, 7, 16), (2, 1 << 22, 0), (3, 7, 0), (3, 1 << 22, 1e9)],
)
def test_every_search_path_gives_the_same_values(monkeypatch, radius, chunk_elements, column_cost):
    rng = np.random.default_rng(3)
    preds = torch.from_numpy(np.stack([random_masks(rng, 40, 40) for _ in range(6)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, 40, 40) for _ in range(6)]))
    expected = F.boundary_metrics(preds, targets)
    searched = {"_pairwise_search": 0, "_column_search": 0}
    for name in searched:
        search = getattr(distance, name)

        def spy(*args, name=name, search=search):
            searched[name] += 1
            return search(*args)

        monkeypatch.setattr(distance, name, spy)
    monkeypatch.setattr(distance, "WINDOW_RADIUS", radius)
    monkeypatch.setattr(distance, "CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(distance, "COLUMN_SEARCH_COST", column_cost)
    again = F.boundary_metrics(preds, targets)
    assert searched["_column_search" if column_cost == 0 else "_pairwise_search"] > 0
    if column_cost > 1e6:
        assert searched["_column_search"] == 0
    for name in NAMES:
        torch.testing.assert_close(again[name], expected[name], rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 8, 8), (1, 1, 1), (4, 0, 3)])
def test_sparse_nonzero_equals_nonzero(shape):
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(0)) < 0.2
    for got, want in zip(distance.sparse_nonzero(mask), mask.nonzero(as_tuple=True), strict=True):
        assert torch.equal(got, want)


# --- edge cases and hand-drawn masks -----------------------------------------------------------


def edge_case_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    h, w = 12, 17
    empty = np.zeros((h, w), dtype=bool)
    full = np.ones((h, w), dtype=bool)
    pixel = empty.copy()
    pixel[4, 6] = True
    other_pixel = empty.copy()
    other_pixel[9, 15] = True
    corner = empty.copy()
    corner[:5, :4] = True
    row_line, col_line = empty.copy(), empty.copy()
    row_line[6, 2:15] = True
    col_line[1:11, 8] = True
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - 6, xx - 8)
    ring = (radius <= 5) & (radius >= 3)
    disc = radius <= 4.5
    checker = (yy + xx) % 2 == 0
    return {
        "both empty": (empty, empty),
        "pred empty": (empty, disc),
        "target empty": (ring, empty),
        "single pixels": (pixel, other_pixel),
        "pixel in disc": (pixel, disc),
        "full image": (full, full),
        "full vs disc": (full, disc),
        "touching border": (corner, disc),
        "lines": (row_line, col_line),
        "ring vs disc": (ring, disc),
        "checkerboard": (checker, disc),
        "checkerboards": (checker, ~checker),
    }


@pytest.mark.parametrize("case", list(edge_case_pairs()))
def test_edge_cases_match_brute_force(case):
    pred, target = edge_case_pairs()[case]
    assert_matches_reference(pred, target)
    assert_matches_reference(target, pred)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 90, 91), (2, 128, 128), (1, 255, 8, 8), (2, 17, 64, 65)])
def test_counts_equal_plain_sums(shape):
    # above 4 * COUNT_BLOCK pixels per image the count adds eight bytes at a time; a full image is the worst case
    generator = torch.Generator().manual_seed(sum(shape))
    for fill in (0.0, 0.3, 1.0):
        mask = torch.rand(shape, generator=generator) < fill if fill < 1 else torch.ones(shape, dtype=torch.bool)
        want = mask.reshape(shape[0], -1).sum(dim=1)
        assert torch.equal(F._count(mask).long(), want)
        assert torch.equal(F._count(mask[:, 1:]).long(), mask[:, 1:].reshape(shape[0], -1).sum(dim=1))  # a view


def test_empty_mask_rules():
    empty = torch.zeros(2, 8, 9, dtype=torch.bool)
    some = empty.clone()
    some[:, 2:5, 3:6] = True
    both = F.boundary_metrics(empty, empty)
    one = F.boundary_metrics(empty, some)
    for name in ("hd", "hd95", "assd"):
        assert both[name].tolist() == [0.0, 0.0]
        assert one[name].tolist() == [math.inf, math.inf]
    for name in ("dice", "iou", "nsd", "bf1", "biou"):
        assert both[name].tolist() == [1.0, 1.0]
        assert one[name].tolist() == [0.0, 0.0]


def test_squares_shifted_by_three_pixels():
    pred = torch.zeros(20, 30, dtype=torch.bool)
    target = pred.clone()
    pred[5:10, 5:10] = True
    target[5:10, 8:13] = True
    got = F.boundary_metrics(pred, target)
    # Each 16-pixel boundary: top and bottom rows at 3, 2, 1, 0, 0, the far side at 3, the
    # overlapping side at 1 (see the sums below), in both directions.
    assert got["hd"].item() == 3.0
    assert got["hd95"].item() == 3.0
    assert got["assd"].item() == pytest.approx((2 * (3 + 2 + 1) + 3 * 3 + 3 * 1) / 16)
    assert got["nsd"].item() == pytest.approx(11 / 16)
    assert got["bf1"].item() == pytest.approx(11 / 16)
    assert got["dice"].item() == pytest.approx(2 * 10 / 50)
    assert got["iou"].item() == pytest.approx(10 / 40)


def test_pixels_at_a_3_4_5_triangle():
    pred = torch.zeros(10, 10, dtype=torch.bool)
    target = pred.clone()
    pred[1, 2] = True
    target[4, 6] = True
    got = F.boundary_metrics(pred, target, tolerance=5.0)
    assert [got[n].item() for n in ("hd", "hd95", "assd", "nsd", "bf1", "dice")] == [5.0, 5.0, 5.0, 1.0, 1.0, 0.0]
    assert F.nsd(pred, target, tolerance=4.99).item() == 0.0


@pytest.mark.parametrize("side", [1500, 2900])
def test_far_apart_corners_stay_exact_in_large_images(side):
    # 1500: the brute force's |q|² + |c|² - 2 q·c needs float64; 2900: H² + W² >= 2**24 too.
    pred = torch.zeros(1, side, side, dtype=torch.bool)
    target = pred.clone()
    pred[0, 0, 0] = True
    target[0, side - 1, side - 2] = True
    want = math.hypot(side - 1, side - 2)
    assert F.hd(pred, target).item() == pytest.approx(want, rel=1e-7)
    assert F.assd(pred, target).item() == pytest.approx(want, rel=1e-7)


def test_hd95_interpolates_like_torch_quantile():
    # A 3-pixel line 11 rows below the square; 36 coinciding boundary pixels. Rank 0.95 * 38 = 36.1
    # falls between the line's two nearest pixels, so the value is interpolated.
    pred = torch.zeros(30, 30, dtype=torch.bool)
    pred[5:15, 5:15] = True
    target = pred.clone()
    target[25, 20:23] = True
    got = F.hd95(pred, target).item()
    d_tp = torch.tensor([0.0] * 36 + [math.hypot(11, 6), math.hypot(11, 7), math.hypot(11, 8)])
    assert got == pytest.approx(torch.quantile(d_tp, 0.95).item(), rel=1e-6)
    assert math.hypot(11, 6) < got < math.hypot(11, 7)


def test_biou_band_width_follows_the_image_diagonal():
    assert F.band_width(10, 10) == 1
    assert F.band_width(256, 256) == 7
    assert F.band_width(512, 384) == 13
    # A square far from the border erodes to the square shrunk by k on every side.
    pred = np.zeros((400, 400), dtype=bool)
    pred[100:140, 100:140] = True
    target = np.roll(pred, 1, axis=1)
    k = F.band_width(400, 400)
    assert k == 11
    bands = []
    for mask in (pred, target):
        inner = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        top, bottom, left, right = ys.min() + k, ys.max() - k, xs.min() + k, xs.max() - k
        inner[top : bottom + 1, left : right + 1] = True
        bands.append(mask & ~inner)
    want = (bands[0] & bands[1]).sum() / (bands[0] | bands[1]).sum()
    assert F.biou(torch.from_numpy(pred), torch.from_numpy(target)).item() == pytest.approx(want)


# --- shapes, types, devices --------------------------------------------------------------------


def test_shapes_and_single_metric_functions_agree_with_boundary_metrics():
    rng = np.random.default_rng(11)
    preds = torch.from_numpy(np.stack([random_masks(rng, 21, 13) for _ in range(4)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, 21, 13) for _ in range(4)]))
    together = F.boundary_metrics(preds, targets, tolerance=1.0)
    assert set(together) == set(NAMES)
    for name in NAMES:
        single = getattr(F, name)
        kwargs = {"tolerance": 1.0} if name in ("nsd", "bf1") else {}
        batch = single(preds, targets, **kwargs)
        assert batch.shape == (4,) and batch.dtype == torch.float32
        torch.testing.assert_close(batch, together[name], rtol=0, atol=0)
        one = single(preds[2], targets[2], **kwargs)
        assert one.shape == ()
        torch.testing.assert_close(one, together[name][2], rtol=0, atol=0)
    nothing = F.boundary_metrics(preds[:0], targets[:0])
    assert all(value.shape == (0,) for value in nothing.values())


def test_bad_inputs_raise_clear_errors():
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    with pytest.raises(TypeError, match="bool mask"):
        F.hd95(mask.float(), mask)
    with pytest.raises(ValueError, match="same shape"):
        F.hd95(mask, mask[:, :4])
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(H, W\)"):
        F.hd95(mask[None], mask[None])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(5)
    preds = torch.from_numpy(np.stack([random_masks(rng, 64, 80) for _ in range(8)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, 64, 80) for _ in range(8)]))
    on_cpu = F.boundary_metrics(preds, targets)
    on_gpu = F.boundary_metrics(preds.cuda(), targets.cuda())
    for name in NAMES:
        assert on_gpu[name].device.type == "cuda"
        torch.testing.assert_close(on_gpu[name].cpu(), on_cpu[name], rtol=1e-6, atol=1e-6)


# --- MONAI -------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the (prediction|ground truth) of class:UserWarning")
def test_distance_metrics_match_monai_where_finite():
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(2)
    preds = torch.from_numpy(np.stack([random_masks(rng, 37, 52) for _ in range(24)]))
    targets = torch.from_numpy(np.stack([random_masks(rng, 37, 52) for _ in range(24)]))
    ours = F.boundary_metrics(preds, targets, tolerance=2.0)
    y_pred, y = preds[:, None].float(), targets[:, None].float()
    theirs = {
        "hd": monai_metrics.compute_hausdorff_distance(y_pred, y, include_background=True),
        "hd95": monai_metrics.compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95),
        "assd": monai_metrics.compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True),
        "nsd": monai_metrics.compute_surface_dice(y_pred, y, class_thresholds=[2.0], include_background=True),
    }
    compared = 0
    for name, values in theirs.items():
        values = values[:, 0]
        finite = torch.isfinite(values)
        compared += int(finite.sum())
        torch.testing.assert_close(ours[name][finite], values[finite].float(), rtol=1e-5, atol=1e-5)
    assert compared >= 60
