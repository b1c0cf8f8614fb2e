"""BoundaryMetrics: per-class values, ignore index, empty rule, summary rows, state size."""

import math

import numpy as np
import pytest
import torch

from unetlab.metrics import BoundaryMetrics
from unetlab.metrics import functional as F

NAMES = F.METRIC_NAMES


def random_label_maps(seed: int, num_images: int = 5, num_classes: int = 4, shape=(24, 31)):
    """Blocky label maps; predictions are the targets with labels moved, dropped and added."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, size=(num_images, shape[0] // 6 + 1, shape[1] // 6 + 1))
    target = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[:, : shape[0], : shape[1]]
    pred = np.roll(target, shift=(1, -2), axis=(1, 2)).copy()
    noise = rng.random(pred.shape) < 0.05
    pred[noise] = rng.integers(0, num_classes, size=int(noise.sum()))
    target[:, :3, :5] = 255
    target[0][target[0] == 2] = 0  # class 2 absent from image 0's target only
    pred[1][pred[1] == 3] = 0  # class 3 absent from image 1's prediction only
    pred[2][pred[2] == 1] = 0  # class 1 absent from both in image 2
    target[2][target[2] == 1] = 0
    return torch.from_numpy(pred), torch.from_numpy(target)


def reference_per_image(pred, target, num_classes, tolerance=2.0, ignore_index=255):
    """(N, C-1, 8) metric values and (N, C-1) empty flags from the functional code, one pair at a time."""
    num_images, height, width = target.shape
    values = torch.zeros(num_images, num_classes - 1, 8, dtype=torch.float64)
    empty = torch.zeros(num_images, num_classes - 1, dtype=torch.float64)
    for n in range(num_images):
        valid = target[n] != ignore_index
        for c in range(1, num_classes):
            p, t = (pred[n] == c) & valid, (target[n] == c) & valid
            got = F.boundary_metrics(p, t, tolerance)
            empty[n, c - 1] = float(p.any().item() != t.any().item())
            for i, name in enumerate(NAMES):
                value = got[name].item()
                values[n, c - 1, i] = math.hypot(height, width) if math.isinf(value) else value
    return values, empty


def test_compute_equals_per_image_functional_reference():
    pred, target = random_label_maps(0)
    metric = BoundaryMetrics(num_classes=4, tolerance=1.5)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    got = metric.compute()
    values, empty = reference_per_image(pred, target, 4, tolerance=1.5)
    assert empty.sum() >= 2  # the test data do hold one-sided classes
    per_class = values.mean(dim=0)
    for i, name in enumerate(NAMES):
        for c in range(1, 4):
            assert got[f"{name}/{c}"].item() == pytest.approx(per_class[c - 1, i].item(), rel=1e-5, abs=1e-6)
        assert got[name].item() == pytest.approx(per_class[:, i].mean().item(), rel=1e-5, abs=1e-6)
    for c in range(1, 4):
        assert got[f"empty_rate/{c}"].item() == pytest.approx(empty[:, c - 1].mean().item())
    assert got["empty_rate"].item() == pytest.approx(empty.mean().item())
    expected_keys = {f"{name}{suffix}" for name in (*NAMES, "empty_rate") for suffix in ("", "/1", "/2", "/3")}
    assert set(got) == expected_keys
    assert all(value.ndim == 0 and torch.isfinite(value) for value in got.values())


def test_one_sided_class_scores_the_diagonal_and_counts_in_empty_rate():
    target = torch.zeros(2, 30, 40, dtype=torch.long)
    target[:, 5:10, 5:10] = 1
    pred = target.clone()
    pred[0, 20:25, 30:35] = 2  # class 2 only in the prediction of image 0
    metric = BoundaryMetrics(num_classes=3)
    metric.update(pred, target)
    got = metric.compute()
    assert got["hd/2"].item() == pytest.approx(math.hypot(30, 40) / 2)  # image 1: both empty -> 0
    assert got["dice/2"].item() == pytest.approx(0.5)  # image 1: both empty -> 1
    assert got["empty_rate/2"].item() == 0.5
    assert got["empty_rate/1"].item() == 0.0
    assert got["hd/1"].item() == 0.0 and got["dice/1"].item() == 1.0


def test_ignored_pixels_leave_both_masks():
    target = torch.zeros(1, 20, 20, dtype=torch.long)
    target[0, 2:8, 2:8] = 1
    target[0, 10:18, 10:18] = 255
    pred = target.clone()
    pred[0, 10:18, 10:18] = 1  # a false positive, but only where the target is ignored
    metric = BoundaryMetrics(num_classes=2)
    metric.update(pred, target)
    got = metric.compute()
    assert got["hd"].item() == 0.0 and got["dice"].item() == 1.0
    unmasked = BoundaryMetrics(num_classes=2, ignore_index=254)
    with pytest.raises(ValueError, match="outside 0..1"):
        unmasked.update(pred, target)


def test_logits_are_reduced_by_argmax():
    pred, target = random_label_maps(1)
    logits = torch.nn.functional.one_hot(pred, 4).permute(0, 3, 1, 2).float() * 3 + torch.rand(5, 4, 24, 31)
    from_labels, from_logits = BoundaryMetrics(4), BoundaryMetrics(4)
    from_labels.update(logits.argmax(dim=1), target)
    from_logits.update(logits, target)
    for key, value in from_labels.compute().items():
        assert torch.equal(from_logits.compute()[key], value), key


def test_summary_rows_match_compute_and_per_image_statistics():
    pred, target = random_label_maps(2)
    metric = BoundaryMetrics(num_classes=4)
    metric.update(pred, target)
    got = metric.compute()
    rows = metric.summary()
    values, empty = reference_per_image(pred, target, 4)
    assert len(rows) == 8 * 4
    assert {row["class"] for row in rows} == {"1", "2", "3", "mean"}
    by_key = {(row["metric"], row["class"]): row for row in rows}
    for i, name in enumerate(NAMES):
        for c in ("1", "2", "3"):
            row = by_key[(name, c)]
            column = values[:, int(c) - 1, i].numpy()
            assert row["value"] == pytest.approx(got[f"{name}/{c}"].item(), rel=1e-6, abs=1e-6)
            assert row["std"] == pytest.approx(np.std(column), rel=1e-5, abs=1e-6)
            assert row["n"] == 5
            assert row["empty_rate"] == pytest.approx(empty[:, int(c) - 1].mean().item())
        row = by_key[(name, "mean")]
        per_image = values[:, :, i].mean(dim=1).numpy()
        assert row["value"] == pytest.approx(per_image.mean(), rel=1e-5, abs=1e-6)
        assert row["std"] == pytest.approx(np.std(per_image), rel=1e-5, abs=1e-6)
        assert row["empty_rate"] == pytest.approx(empty.mean().item())


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_state_is_a_small_per_image_summary_and_reset_clears_it():
    pred, target = random_label_maps(3, num_images=4, shape=(120, 90))
    metric = BoundaryMetrics(num_classes=4)
    metric.update(pred, target)
    (summary,) = metric.per_image
    assert summary.shape == (4, 3, 9) and summary.dtype == torch.float32
    metric.reset()
    assert metric.per_image == []
    assert all(torch.isnan(value) for value in metric.compute().values())


def test_bad_inputs_raise_clear_errors():
    metric = BoundaryMetrics(num_classes=3)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="got preds"):
        metric.update(labels[:, :4], labels)
    with pytest.raises(TypeError, match="integer label map"):
        metric.update(labels.float(), labels)
    with pytest.raises(ValueError, match="preds holds labels 0..3"):
        metric.update(labels + 3 * (torch.rand(2, 8, 8) < 0.5), labels)
    with pytest.raises(ValueError, match=">= 2"):
        BoundaryMetrics(num_classes=1)
