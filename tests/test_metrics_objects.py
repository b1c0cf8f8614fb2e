"""Per-object metrics (unetlab/metrics/objects.py, ObjectMetrics) and nsd/bf1 over several tolerances."""

import math

import pytest
import torch

from unetlab.bootstrap import resample_indices
from unetlab.evaluation.rows import object_rows, tolerance_rows
from unetlab.metrics import BoundaryMetrics, ObjectMetrics
from unetlab.metrics import functional as F
from unetlab.metrics.objects import bin_edges, bin_index, bin_names, object_metrics


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """48x48 masks with six ground-truth objects, in raster order of their first pixel:

    A (4:12, 4:12) found exactly; B (4:10, 30:36) missed; C (20:30, 4:8) split in two halves (IoU 0.4 each);
    F (20:30, 20:30) found shifted 1 px right (IoU 90/110); D (36:42, 20:26) and E (36:42, 28:34) merged into one
    predicted blob (IoU 36/84 each)."""
    target = torch.zeros(48, 48, dtype=torch.bool)
    pred = torch.zeros_like(target)
    target[4:12, 4:12] = pred[4:12, 4:12] = True  # A
    target[4:10, 30:36] = True  # B, missed
    target[20:30, 4:8] = True  # C, split
    pred[20:24, 4:8] = pred[26:30, 4:8] = True
    target[20:30, 20:30] = True  # F, shifted
    pred[20:30, 21:31] = True
    target[36:42, 20:26] = target[36:42, 28:34] = True  # D, E, merged
    pred[36:42, 20:34] = True
    return pred, target


def test_hand_built_objects_found_missed_split_and_merged():
    pred, target = scene()
    found = object_metrics(pred, target)
    assert found["detected"].tolist() == [True, False, False, True, False, False]  # A B C F D E
    assert found["iou"].tolist() == pytest.approx([1.0, 0.0, 0.4, 90 / 110, 36 / 84, 36 / 84])
    areas = torch.tensor([64, 36, 40, 100, 36, 36], dtype=torch.float64)
    assert found["diameter"].tolist() == pytest.approx((2 * torch.sqrt(areas / math.pi)).tolist())
    # A matched exactly; F's distances are those of the pair on its own (the other objects do not interfere)
    assert found["hd95"][0].item() == 0.0 and found["assd"][0].item() == 0.0
    alone_pred, alone_target = torch.zeros_like(pred), torch.zeros_like(target)
    alone_target[20:30, 20:30] = True
    alone_pred[20:30, 21:31] = True
    assert found["hd95"][3].item() == pytest.approx(F.hd95(alone_pred, alone_target).item())
    assert found["assd"][3].item() == pytest.approx(F.assd(alone_pred, alone_target).item())
    assert found["hd95"][3].item() > 0
    assert torch.isnan(found["hd95"][[1, 2, 4, 5]]).all() and torch.isnan(found["assd"][[1, 2, 4, 5]]).all()
    assert found["spurious_image"].numel() == 0  # every predicted blob touches an object


def test_spurious_blobs_are_predicted_components_that_touch_no_object():
    pred, target = scene()
    pred = torch.stack([pred, pred.clone()])
    target = torch.stack([target, target])
    pred[1, 0:2, 0:2] = True  # a 2x2 false positive in image 1, far from every object
    pred[1, 44:48, 40:48] = True  # and a 4x8 one
    pred[1, 4:12, 12] = True  # a line touching A: part of A's blob, not spurious (and A no longer matches exactly)
    found = object_metrics(pred, target)
    assert found["spurious_image"].tolist() == [1, 1]
    assert found["spurious_diameter"].tolist() == pytest.approx(
        [2 * math.sqrt(4 / math.pi), 2 * math.sqrt(32 / math.pi)]
    )
    metric = ObjectMetrics(num_classes=2)
    metric.update(pred.long(), target.long())
    sums = metric.per_image_values()  # (2 images, 1 class, 5 bins, 7 columns): spurious blobs by their own size
    assert sums[:, 0, :, -1].tolist() == [[0, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    rows = {(r["source"], r["metric"], r["class"]): r for r in
            object_rows("probe/enc0", sums, metric.bin_names, resample_indices(2, 200, seed=0))}  # fmt: skip
    pooled = rows[("probe/enc0/objects/all", "spurious", "mean")]
    assert (pooled["value"], pooled["n"]) == (1.0, 2)  # two spurious blobs over two images
    assert pooled["ci_low"] <= 1.0 <= pooled["ci_high"]
    assert rows[("probe/enc0/objects/0-4", "spurious", "1")]["value"] == 0.5


def test_objects_have_physical_diameters_and_distances_with_a_spacing():
    pred, target = scene()
    plain = object_metrics(pred, target)
    scaled = object_metrics(pred, target, spacing=(0.5, 2.0))
    assert scaled["diameter"].tolist() == pytest.approx(plain["diameter"].tolist())  # sy * sx = 1: same area
    # F is shifted along x, where a pixel is 2 units wide: every distance doubles
    assert scaled["hd95"][3].item() == pytest.approx(2 * plain["hd95"][3].item())
    half = object_metrics(pred, target, spacing=(0.5, 0.5))
    assert half["diameter"].tolist() == pytest.approx((plain["diameter"] / 2).tolist())


def test_batched_objects_keep_their_image():
    pred, target = scene()
    empty = torch.zeros_like(target)
    found = object_metrics(torch.stack([empty, pred, pred]), torch.stack([empty, target, empty]))
    assert found["image"].tolist() == [1] * 6  # image 0 and 2 hold no ground-truth object
    assert found["detected"].tolist() == object_metrics(pred, target)["detected"].tolist()


def test_size_bins_of_known_sizes():
    edges = bin_edges((4, 8, 16, 32))
    assert bin_names(edges) == ("0-4", "4-8", "8-16", "16-32", "32+")
    diameters = torch.tensor([0.5, 3.99, 4.0, 7.9, 8.0, 16.0, 31.9, 32.0, 200.0], dtype=torch.float64)
    assert bin_index(diameters, edges).tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4]  # an edge opens the upper bin
    # discs of radius r: equivalent diameter 2r up to the pixel grid
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    for radius, expected_bin in ((1.5, 0), (3.0, 1), (6.0, 2), (12.0, 3), (20.0, 4)):
        disc = (yy - 48) ** 2 + (xx - 48) ** 2 <= radius**2
        found = object_metrics(disc, disc)
        assert found["diameter"].item() == pytest.approx(2 * radius, rel=0.15)
        assert bin_index(found["diameter"], edges).item() == expected_bin, radius
    # with a pixel size the edges are physical: 0.5 um pixels put the 4 px edge at 2 um
    assert bin_names(bin_edges((4, 8), spacing=(0.5, 0.5))) == ("0-2", "2-4", "4+")
    for bad in ([], [4, 4], [8, 4], [0, 4], [4, math.inf]):
        with pytest.raises(ValueError, match="object bins"):
            bin_edges(bad)


def test_object_metric_class_sums_and_rows():
    pred, target = scene()
    labels_target = target.long()[None].repeat(2, 1, 1)
    labels_pred = pred.long()[None].repeat(2, 1, 1)
    labels_target[1, 40:44, 2:6] = 2  # a second class: one 4x4 object, found exactly, in image 1
    labels_pred[1, 40:44, 2:6] = 2
    labels_target[1, 0, 0] = 255  # ignored pixel: no object
    metric = ObjectMetrics(num_classes=3)
    metric.update(labels_pred, labels_target)
    sums = metric.per_image_values()  # (2 images, 2 classes, 5 bins, 7 columns)
    assert sums.shape == (2, 2, 5, 7)
    assert sums[:, 0, :, 0].sum(dim=0).tolist() == [0, 8, 4, 0, 0]  # class 1: B C D E in 4-8, A F in 8-16, twice
    assert sums[:, 0, :, 1].sum(dim=0).tolist() == [0, 0, 4, 0, 0]  # detected: A and F, twice
    assert sums[1, 1, :, :2].tolist() == [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]]  # class 2: 4x4, d 4.51
    result = metric.compute()
    assert result["detected/4-8"].item() == pytest.approx(1 / 9)  # class 2's object found; 8 of class 1 missed
    assert result["detected/8-16"].item() == 1.0
    assert math.isnan(result["detected/0-4"].item()) and math.isnan(result["hd95/32+"].item())

    indices = resample_indices(2, 200, seed=0)
    rows = {(r["source"], r["metric"], r["class"]): r for r in object_rows("model", sums, metric.bin_names, indices)}
    detected = rows[("objects/4-8", "detected", "mean")]
    assert (detected["value"], detected["n"]) == (pytest.approx(1 / 9), 9)
    assert rows[("objects/4-8", "detected", "1")]["value"] == 0.0
    hd95 = rows[("objects/8-16", "hd95", "1")]
    assert hd95["n"] == 4 and hd95["unit"] == "px"
    assert hd95["value"] == pytest.approx(object_metrics(pred, target)["hd95"][[0, 3]].mean().item())
    assert hd95["ci_low"] <= hd95["value"] <= hd95["ci_high"]
    assert math.isnan(rows[("objects/0-4", "detected", "mean")]["value"])
    floor_rows = object_rows("floor/2", sums, metric.bin_names, indices)
    assert {r["source"] for r in floor_rows} == {f"floor/2/objects/{b}" for b in (*metric.bin_names, "all")}
    pooled = rows[("objects/all", "detected", "mean")]  # every size: 9 + 4 objects, 1 + 4 detected
    assert (pooled["value"], pooled["n"]) == (pytest.approx(5 / 13), 13)


def test_object_metric_refuses_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        ObjectMetrics(num_classes=1)
    metric = ObjectMetrics(num_classes=2)
    with pytest.raises(ValueError, match="outside 0..1"):
        metric.update(torch.full((1, 8, 8), 2), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="bool masks"):
        object_metrics(torch.zeros(8, 8), torch.zeros(8, 8))


def test_several_tolerances_in_one_pass_equal_single_tolerance_calls():
    torch.manual_seed(0)
    pred = torch.rand(6, 40, 40) > 0.6
    target = torch.rand(6, 40, 40) > 0.6
    pred[0], target[1] = False, False  # one empty mask each way
    for spacing in ((1.0, 1.0), (0.5, 2.0)):
        values = F.boundary_metrics(pred, target, 2.0, spacing, tolerances=(0.0, 0.5, 2.0, 8.0))
        for tau in (0.0, 0.5, 2.0, 8.0):
            assert torch.equal(values[f"nsd@{tau:g}"], F.nsd(pred, target, tolerance=tau, spacing=spacing))
            assert torch.equal(values[f"bf1@{tau:g}"], F.bf1(pred, target, tolerance=tau, spacing=spacing))
        assert torch.equal(values["nsd@2"], values["nsd"])
    with pytest.raises(ValueError, match="tolerances"):
        F.boundary_metrics(pred, target, tolerances=(-1.0,))
    with pytest.raises(ValueError, match="given twice"):
        F.boundary_metrics(pred, target, tolerances=(1.0, 1))


def test_boundary_metric_class_sweeps_tolerances_per_image():
    target = torch.zeros(3, 24, 24, dtype=torch.long)
    target[:, 4:16, 4:16] = 1
    pred = torch.zeros_like(target)
    pred[0, 4:16, 4:16] = 1  # exact
    pred[1, 4:16, 7:19] = 1  # shifted 3 px
    # image 2: missed
    metric = BoundaryMetrics(num_classes=2, tolerances=(1.0, 4.0))
    metric.update(pred, target)
    assert metric.tolerance_columns == ("nsd@1", "bf1@1", "nsd@4", "bf1@4")
    values = metric.tolerance_values()  # (3, 1, 4)
    shifted = F.boundary_metrics(pred[1] == 1, target[1] == 1, tolerances=(1.0, 4.0))
    assert values[0, 0].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert values[1, 0].tolist() == pytest.approx([shifted[c].item() for c in metric.tolerance_columns])
    assert values[1, 0, 0] < values[1, 0, 2] == 1.0  # within 4 px everything, within 1 px not
    assert values[2, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    rows = tolerance_rows("model", values, metric.tolerance_columns, resample_indices(3, 100, seed=0))
    nsd1 = next(r for r in rows if (r["metric"], r["class"]) == ("nsd@1", "mean"))
    assert nsd1["value"] == pytest.approx(values[:, 0, 0].mean().item()) and nsd1["n"] == 3
