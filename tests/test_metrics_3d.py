"""Boundary metrics on volumes (``spatial_dims=3``): a brute force, scipy's erosions, MONAI, the metric classes."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from unetlab.metrics import BoundaryMetrics, ObjectMetrics, distance3d
from unetlab.metrics import functional as F
from unetlab.metrics.distance3d import inner_boundary_3d, surface_sq_distances_3d
from unetlab.metrics.objects import object_metrics

SPACINGS = [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (0.7, 1.3, 0.4)]


def ball(shape, centre, radii, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """bool volume: the ellipsoid of ``radii`` (physical units) around ``centre`` (voxels)."""
    grid = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    return sum(((g - c) * s / r) ** 2 for g, c, r, s in zip(grid, centre, radii, spacing)) <= 1


def random_pair(rng: np.random.Generator, shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """A target of one to three ellipsoids and a prediction moved, grown or shrunk, sometimes with a blob added."""
    extent = np.asarray(shape) * np.asarray(spacing)

    def blob():
        return ball(
            shape, rng.uniform(0.2, 0.8, 3) * np.asarray(shape), rng.uniform(0.1, 0.3, 3) * extent.min(), spacing
        )

    target = np.logical_or.reduce([blob() for _ in range(rng.integers(1, 4))])
    pred = np.roll(target, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))
    change = int(rng.integers(-1, 2))
    if change > 0:
        pred = ndimage.binary_dilation(pred, iterations=change)
    elif change < 0:
        pred = ndimage.binary_erosion(pred, iterations=-change)
    if rng.random() < 0.5:
        pred |= blob()
    return pred, target


def ref_boundary(mask: np.ndarray) -> np.ndarray:
    """``m AND NOT erode(m)`` by the 6-connected cross, outside the volume background (scipy)."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1), border_value=0)


def ref_metrics(pred: np.ndarray, target: np.ndarray, tolerance: float, spacing) -> dict:
    """The definitions written out with scipy's erosions and all pairwise distances."""
    scale = np.asarray(spacing)
    pairwise = cdist(np.argwhere(ref_boundary(pred)) * scale, np.argwhere(ref_boundary(target)) * scale)
    d_pt, d_tp = pairwise.min(axis=1), pairwise.min(axis=0)
    within_pt, within_tp = (d.astype(np.float32) <= np.float32(tolerance) for d in (d_pt, d_tp))
    precision, recall = within_pt.mean(), within_tp.mean()
    length = math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing)))
    widths = [max(1, round(0.02 * length / s)) for s in spacing]
    box = np.ones([2 * k + 1 for k in widths], dtype=bool)
    bands = [mask & ~ndimage.binary_erosion(mask, box, border_value=0) for mask in (pred, target)]
    q95 = [torch.quantile(torch.tensor(d, dtype=torch.float32), 0.95).item() for d in (d_pt, d_tp)]
    return {
        "dice": 2 * (pred & target).sum() / (pred.sum() + target.sum()),
        "iou": (pred & target).sum() / (pred | target).sum(),
        "hd": max(d_pt.max(), d_tp.max()),
        "hd95": max(q95),
        "assd": np.concatenate([d_pt, d_tp]).mean(),
        "nsd": np.concatenate([within_pt, within_tp]).mean(),
        "bf1": 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall),
        "biou": (bands[0] & bands[1]).sum() / (bands[0] | bands[1]).sum(),
    }


def test_boundary_is_the_mask_minus_its_6_connected_erosion():
    rng = np.random.default_rng(0)
    for shape in ((3, 9, 10, 11), (2, 1, 5, 6), (1, 4, 1, 3), (2, 3, 4, 1), (1, 2, 2, 2), (0, 3, 3, 3)):
        masks = rng.random(shape) < 0.6
        ours = inner_boundary_3d(torch.from_numpy(masks)).numpy()
        expected = np.array([ref_boundary(m) for m in masks], dtype=bool).reshape(shape)
        assert np.array_equal(ours, expected), shape
    strided = torch.from_numpy(rng.random((3, 9, 10, 11)) < 0.6).transpose(1, 3)
    assert np.array_equal(inner_boundary_3d(strided).numpy(), np.stack([ref_boundary(m) for m in strided.numpy()]))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_all_eight_metrics_equal_the_brute_force(spacing):
    rng = np.random.default_rng(1)
    shape = (14, 18, 20)
    pairs = [random_pair(rng, shape, spacing) for _ in range(4)]
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))
    target = torch.from_numpy(np.stack([t for _, t in pairs]))
    ours = F.boundary_metrics(pred, target, tolerance=1.5, spacing=spacing, spatial_dims=3)
    for n, (p, t) in enumerate(pairs):
        expected = ref_metrics(p, t, 1.5, spacing)
        for name, value in expected.items():
            assert ours[name][n].item() == pytest.approx(float(value), rel=1e-5, abs=1e-5), (name, n)


def brute_sq_distances(pb: torch.Tensor, tb: torch.Tensor, spacing) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Segments and, per segment, the sorted squared distances over all voxel pairs, each offset evaluated as the
    kernel does: ``fl(fl(fl(dr² s_r²) + fl(da² s_a²)) + fl(dw² s_w²))`` with its axes (dense a, row r, window w)."""
    sq = [float(s) ** 2 for s in spacing]
    dense, row, window = distance3d.search_axes(tuple(sq))
    num = pb.shape[0]
    segments, values = [], []
    for direction, (queries, partners) in enumerate(((pb, tb), (tb, pb))):
        for n in range(num):
            q = queries[n].nonzero().double()
            p = partners[n].nonzero().double()
            d = [(q[:, axis, None] - p[:, axis]) ** 2 * sq[axis] for axis in range(3)]
            if len(p):
                values.append(torch.sort(((d[row] + d[dense]) + d[window]).amin(dim=1)).values)
            else:
                values.append(torch.full((len(q),), math.inf, dtype=torch.float64))
            segments.append(torch.full((len(q),), direction * num + n))
    return torch.cat(segments), values


def assert_equals_brute_force(pb: torch.Tensor, tb: torch.Tensor, spacing) -> None:
    """Bit for bit, segment by segment (the kernel orders the voxels of a segment by its own axes)."""
    segment, sq_distance = surface_sq_distances_3d(pb, tb, spacing)
    expected_segments, expected = brute_sq_distances(pb, tb, spacing)
    assert torch.equal(segment, expected_segments)
    for seg, want in enumerate(expected):
        got = torch.sort(sq_distance[segment == seg].double()).values
        assert torch.equal(got, want), seg


def stage_scene(spacing) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundaries of three pairs: far-apart surfaces (only the last stages settle these), a random scene (the
    first ones) and scattered voxels (every stage in turn)."""
    rng = np.random.default_rng(2)
    shape = (12, 40, 40)
    pred = np.zeros((3, *shape), dtype=bool)
    target = np.zeros((3, *shape), dtype=bool)
    pred[0] = ball(shape, (3, 8, 8), (2.5, 3, 3))
    target[0] = ball(shape, (9, 32, 30), (2, 4, 3))
    pred[1], target[1] = random_pair(rng, shape, spacing)
    pred[2] = rng.random(shape) < 0.02
    target[2] = rng.random(shape) < 0.02
    return inner_boundary_3d(torch.from_numpy(pred)), inner_boundary_3d(torch.from_numpy(target))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_search_stage_gives_the_exact_distance(spacing, monkeypatch):
    """Each squared distance equals the minimum over all voxel pairs, evaluated in the same order, bit for bit;
    every stage runs (window reaches, dense-pass reaches up to the last, spanning stage), with the stage buffer
    filled afresh and grown stage by stage, reallocated at every stage, or one stage spanning the box at once."""
    pb, tb = stage_scene(spacing)
    calls = {"windows": set(), "dense": set()}
    window_search, dense_pass = distance3d._window_search, distance3d._dense_pass

    def spy_window(grid, first, sq_w):
        calls["windows"].add(sq_w.numel() // 2)
        return window_search(grid, first, sq_w)

    def spy_dense(box, source, a0, reached, reach, sq_step_a):
        calls["dense"].add((min(reached, 1), reach))  # -1: fresh buffer, 0: the row distances, 1: grown
        return dense_pass(box, source, a0, reached, reach, sq_step_a)

    monkeypatch.setattr(distance3d, "_window_search", spy_window)
    monkeypatch.setattr(distance3d, "_dense_pass", spy_dense)
    assert_equals_brute_force(pb, tb, spacing)
    assert len(calls["windows"]) >= 4  # several window reaches
    reaches = {reach for _, reach in calls["dense"]}
    dense = distance3d.search_axes(tuple(float(s) ** 2 for s in spacing))[0]
    extent = (pb[0] | tb[0]).nonzero()[:, dense]
    assert {1, 3, 8} <= reaches and int(extent.max() - extent.min()) in reaches  # up to the whole box of pair 0
    assert {start for start, _ in calls["dense"]} == {-1, 1}  # a fresh buffer, grown stage by stage
    # Reallocations at every stage (a buffer padded for one stage only): the buffer is refilled, same results.
    monkeypatch.setattr(distance3d, "PAD_STAGES", 1)
    calls["dense"].clear()
    assert_equals_brute_force(pb, tb, spacing)
    assert {1, 3, 8} <= {reach for start, reach in calls["dense"] if start == -1}  # afresh in each new buffer
    # One stage spanning the whole box (the exhaustive search of the earlier kernel): the same values.
    monkeypatch.setattr(distance3d, "DENSE_REACHES", (10**6, 10**7))
    calls["windows"].clear()
    assert_equals_brute_force(pb, tb, spacing)
    assert len(calls["windows"]) == 3  # one stage per pair


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 1.0), (1.0, 0.9, 0.3)])
def test_long_rows_and_thin_boxes_give_the_exact_distance(spacing, monkeypatch):
    """Rows of 128 voxels and more (int16 row steps), boxes one or two voxels thin along the dense axis (the
    window reach keeps growing after the dense one spans the box: the row distances copied into a wider buffer),
    single voxels, empty volumes."""
    calls = set()
    dense_pass = distance3d._dense_pass

    def spy_dense(box, source, a0, reached, reach, sq_step_a):
        calls.add((reached, reach))
        return dense_pass(box, source, a0, reached, reach, sq_step_a)

    monkeypatch.setattr(distance3d, "_dense_pass", spy_dense)
    rng = np.random.default_rng(6)
    for shape in ((3, 140, 4), (2, 5, 90), (1, 30, 1), (1, 3, 60), (4, 3, 200), (2, 2, 2)):
        pred = torch.from_numpy(rng.random((3, *shape)) < 0.03)
        target = torch.from_numpy(rng.random((3, *shape)) < 0.03)
        pred[1] = False  # one empty boundary: inf the other way
        target[2] = False
        pred[2] = False  # both empty
        pred[0].view(-1)[0] = target[0].view(-1)[-1] = True
        assert_equals_brute_force(pred, target, spacing)
    assert (-1, 0) in calls


def test_row_steps_and_stages():
    volumes = torch.from_numpy(np.random.default_rng(7).random((2, 3, 150, 5)) < 0.05)
    for length in (150, 100):  # int16, uint8
        rows = volumes[:, :, :length]
        steps = distance3d._row_steps(rows).long()
        index = torch.arange(length)[:, None]
        for k in range(2):
            for a in range(3):
                for w in range(5):
                    where = rows[k, a, :, w].nonzero().squeeze(1)
                    want = (index - where).abs().amin(dim=1) if len(where) else torch.full((length,), length)
                    assert torch.equal(steps[k, a, :, w].clamp(max=length), want)
    stages = distance3d._stages((6.25, 0.64, 0.64), 29, 75)
    assert [stage[:2] for stage in stages] == [(0, 3), (1, 6), (3, 12), (8, 28), (21, 68), (28, 74)]
    assert [stage[2] for stage in stages] == [6.25, 25.0, 100.0, 506.25, 3025.0, math.inf]
    assert distance3d._stages((1.0, 1.0, 1.0), 2, 300)[-2:] == [(1, 146, 147.0**2), (1, 299, math.inf)]


def test_monai_agrees_on_volumes_with_anisotropic_voxels():
    monai_metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(3)
    spacing = (2.5, 0.8, 0.8)
    shape = (16, 40, 36)
    pairs = [random_pair(rng, shape, spacing) for _ in range(4)]
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]))
    target = torch.from_numpy(np.stack([t for _, t in pairs]))
    ours = F.boundary_metrics(pred, target, tolerance=1.6, spacing=spacing, spatial_dims=3)
    y_pred, y = pred[:, None].float(), target[:, None].float()
    theirs = {
        "hd": monai_metrics.compute_hausdorff_distance(y_pred, y, spacing=spacing)[:, 0],
        "hd95": monai_metrics.compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)[:, 0],
        "assd": monai_metrics.compute_average_surface_distance(y_pred, y, symmetric=True, spacing=spacing)[:, 0],
        "nsd": monai_metrics.compute_surface_dice(y_pred, y, class_thresholds=[1.6], spacing=spacing)[:, 0],
    }
    for name, values in theirs.items():
        assert torch.allclose(ours[name], values.float(), rtol=1e-5, atol=1e-5), name


def monai_sphere(radius, centre, spacing=(1.0, 1.0, 1.0), shape=(99, 99, 99)) -> torch.Tensor:
    """The ball of MONAI's own 3D metric tests (``create_spherical_seg_3d``): voxel ``i`` at ``i * spacing`` along each
    axis, inside where the distance to ``centre`` is at most ``radius``."""
    axes = np.ogrid[: shape[0], : shape[1], : shape[2]]
    squared = sum((axis.astype(float) * step - centre) ** 2 for axis, step, centre in zip(axes, spacing, centre))
    return torch.from_numpy(squared <= radius * radius)


MONAI_SPACING = (0.85, 1.2, 0.9)
# MONAI's published 3D cases (tests/metrics/test_hausdorff_distance.py and test_surface_distance.py in
# Project-MONAI/MONAI): (pred ball, target ball, spacing, metric, MONAI's expected value) for its Euclidean, symmetric
# hd, hd95 (percentile=95) and assd (symmetric=True); its values are float32.
MONAI_CASES = [
    ((20, (20, 20, 20)), (20, (19, 19, 19)), None, "hd", 1.7320508075688772),
    ((33, (19, 33, 22)), (33, (20, 33, 22)), None, "hd", 1.0),
    ((20, (20, 33, 22)), (40, (20, 33, 22)), None, "hd", 20.223748416156685),
    ((20, (20, 33, 22)), (40, (20, 33, 22)), None, "hd95", 20.09975124224178),
    ((20, (20, 20, 20)), (20, (19, 19, 19)), MONAI_SPACING, "hd", 2.2671568),
    ((15, (20, 33, 22)), (30, (20, 33, 22)), MONAI_SPACING, "hd", 15.62594),
    ((33, (19, 33, 22)), (33, (20, 33, 22)), None, "assd", 0.350217),
    ((20, (20, 33, 22)), (40, (20, 33, 22)), None, "assd", 15.117741),
    ((33, (42, 45, 52)), (33, (43, 45, 52)), MONAI_SPACING, "assd", 0.4951),
]


@pytest.mark.parametrize(("pred", "target", "spacing", "metric", "expected"), MONAI_CASES)
def test_monais_published_3d_cases(pred, target, spacing, metric, expected):
    p = monai_sphere(*pred, spacing=spacing or (1.0, 1.0, 1.0))
    t = monai_sphere(*target, spacing=spacing or (1.0, 1.0, 1.0))
    got = F.boundary_metrics(p, t, spacing=spacing, spatial_dims=3)[metric]
    assert float(got) == pytest.approx(expected, rel=5e-6)  # MONAI's values are float32, some given to 6 digits


def test_monais_published_3d_surface_dice():
    # MONAI's test_surface_dice.py, 3D: two half-spaces 10 voxels apart in a 200 x 110 x 80 volume, tolerance 0
    pred, target = torch.zeros(200, 110, 80, dtype=torch.bool), torch.zeros(200, 110, 80, dtype=torch.bool)
    pred[:, :, 20:], target[:, :, 30:] = True, True
    missed = 200 * 110 + 198 * 108 + 9 * 200 * 2 + 9 * 108 * 2  # boundary voxels farther than 0 from the other
    foreground = 1 - missed / (200 * 110 * 4 + (58 + 48) * 200 * 2 + (58 + 48) * 108 * 2)
    background = 1 - missed / (200 * 110 * 4 + (28 + 18) * 200 * 2 + (28 + 18) * 108 * 2)
    assert float(F.boundary_metrics(pred, target, tolerance=0.0, spatial_dims=3)["nsd"]) == pytest.approx(foreground)
    assert float(F.boundary_metrics(~pred, ~target, tolerance=0.0, spatial_dims=3)["nsd"]) == pytest.approx(background)
    assert float(F.boundary_metrics(pred, target, tolerance=10.0, spatial_dims=3)["nsd"]) == 1.0


def test_single_volume_empty_masks_and_bad_input():
    volume = torch.from_numpy(ball((8, 9, 10), (4, 4, 5), (3, 3, 3)))
    empty = torch.zeros_like(volume)
    assert F.hd95(volume, volume, spatial_dims=3).item() == 0.0
    assert F.dice(volume, volume, spatial_dims=3).ndim == 0
    assert math.isinf(F.hd(volume, empty, spacing=(2.0, 1.0, 1.0), spatial_dims=3).item())
    assert F.nsd(empty, empty, spatial_dims=3).item() == 1.0
    with pytest.raises(ValueError, match=r"spacing=\(1\.0, 1\.0\): expected the voxel size \(sz, sy, sx\)"):
        F.hd95(volume, volume, spacing=(1.0, 1.0), spatial_dims=3)
    with pytest.raises(ValueError, match=r"\(N, D, H, W\) or \(D, H, W\) with spatial_dims=3, got shape \(9, 10\)"):
        F.hd95(volume[0], volume[0], spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims=4"):
        F.boundary_metrics(volume, volume, spatial_dims=4)


def test_boundary_metric_class_scores_label_volumes_per_class():
    rng = np.random.default_rng(4)
    spacing = (2.0, 1.0, 1.0)
    shape = (10, 16, 16)
    pairs = [random_pair(rng, shape, spacing) for _ in range(3)]
    target = torch.from_numpy(np.stack([t for _, t in pairs])).long()
    preds = torch.from_numpy(np.stack([p for p, _ in pairs])).long()
    target[0, :2] = 2  # a second class in one volume, absent from its prediction
    metric = BoundaryMetrics(3, tolerance=1.0, spacing=spacing, spatial_dims=3)
    metric.update(preds, target)
    values = metric.per_image_values()  # (3, 2, 9)
    expected = F.boundary_metrics(preds == 1, target == 1, 1.0, spacing, spatial_dims=3)
    assert torch.allclose(values[:, 0, 3], expected["hd95"].double())
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing)))
    assert values[0, 1, 2].item() == pytest.approx(diagonal)  # class 2 missed: hd is the volume's diagonal
    assert values[0, 1, -1].item() == 1.0 and values[1, 1, 3].item() == 0.0  # absent from both: perfect
    with pytest.raises(ValueError, match=r"target \(N, D, H, W\)"):
        metric.update(preds[:, 0], target[:, 0])


def test_objects_in_volumes_are_6_connected_balls_with_their_diameter():
    shape = (20, 30, 30)
    spacing = (2.0, 1.0, 1.0)
    near = ball(shape, (10, 15, 8), (6, 6, 6), spacing)
    far = ball(shape, (10, 15, 23), (6, 4, 4), spacing)
    target = torch.from_numpy(near | far)
    pred = torch.from_numpy(np.roll(near, 1, axis=2))  # the first found (shifted by a voxel), the second missed
    pred[0, 0, 0] = pred[1, 1, 1] = True  # touching at a corner only: two spurious blobs, not one
    found = object_metrics(pred, target, spacing, spatial_dims=3)
    assert found["detected"].tolist() == [True, False]
    volume = near.sum() * math.prod(spacing)
    assert found["diameter"][0].item() == pytest.approx(2 * (3 * volume / (4 * math.pi)) ** (1 / 3))
    assert found["diameter"][0].item() == pytest.approx(12.0, rel=0.05)  # the ball's own diameter, 2 x 6
    assert found["hd95"][0].item() == pytest.approx(1.0)
    assert len(found["spurious_diameter"]) == 2
    metric = ObjectMetrics(2, spacing=spacing, spatial_dims=3, bins=(4, 8))
    metric.update(pred[None].long(), target[None].long())
    sums = metric.per_image_values()[0, 0]  # (bins, columns)
    assert sums[:, 0].sum().item() == 2 and sums[:, 1].sum().item() == 1
