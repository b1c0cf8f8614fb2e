"""Test-time shifts at evaluation: shift/<shift> sources and the per-layer Hellinger susceptibility."""

import math

import pytest
import torch

from tests.helpers import compose_train
from unetlab.bootstrap import resample_indices
from unetlab.conventions import feature_keys
from unetlab.evaluation.evaluate import EvalOptions, run_eval
from unetlab.evaluation.shifts import hellinger, histograms, susceptibility_row
from unetlab.report import make_report
from unetlab.report.collect import collect
from unetlab.runs.results import read_per_image, read_results
from unetlab.training.train import train


def test_hellinger_of_known_histograms():
    same = torch.tensor([[[3.0, 1.0, 0.0]]])
    assert hellinger(same, same).item() == pytest.approx(0.0, abs=1e-6)
    disjoint = hellinger(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert disjoint.item() == pytest.approx(1.0)
    # p = (1/2, 1/2), q = (1, 0): affinity sqrt(1/2), H = sqrt(1 - 0.7071)
    half = hellinger(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]]))
    assert half.item() == pytest.approx(math.sqrt(1 - math.sqrt(0.5)))
    # the mean over channels
    both = hellinger(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    assert both.item() == pytest.approx((1 + math.sqrt(1 - math.sqrt(0.5))) / 2)


def test_histograms_share_bins_and_a_shift_moves_them():
    generator = torch.Generator().manual_seed(0)
    inside = torch.randn(20, 3, 64, generator=generator)
    inside_counts, same_counts = histograms(inside, inside.clone())
    assert torch.equal(inside_counts, same_counts) and inside_counts.sum().item() == 20 * 3 * 64
    assert hellinger(inside_counts.sum(0), same_counts.sum(0)).item() == pytest.approx(0.0, abs=1e-6)
    small = hellinger(*(h.sum(0) for h in histograms(inside, inside + 0.2))).item()
    large = hellinger(*(h.sum(0) for h in histograms(inside, inside + 2.0))).item()
    assert 0 < small < large < 1
    constant = torch.zeros(4, 1, 8)
    counts, _ = histograms(constant, constant)
    assert counts[..., 0].sum().item() == 32  # a constant channel: every value in bin 0
    row = susceptibility_row("susceptibility/noise:0.1/enc0", *histograms(inside, inside + 0.2),
                             resample_indices(20, 200, seed=0))  # fmt: skip
    assert row["value"] == pytest.approx(small) and row["ci_low"] <= row["value"] <= row["ci_high"]


def test_eval_scores_each_shift_and_each_layers_susceptibility(tmp_path):
    run_dir = tmp_path / "run"
    cfg = compose_train(run_dir, "model.depth=2", "data.image_size=32")
    train(cfg)
    shifts = ["noise:0", "noise:0.3", "blur:1.5"]
    options = {"probes": False, "floors": False, "objects": False, "ablate_modes": [], "progress": False,
               "shifts": shifts, "erf": True, "erf_images": 2}  # fmt: skip
    run_eval(run_dir / "checkpoints" / "last.ckpt", options, cfg=cfg)
    rows = {(r["source"], r["metric"], r["class"]): r for r in read_results(run_dir / "results.csv")}
    per_image = read_per_image(run_dir / "per_image.npz")
    assert {"shift/noise:0", "shift/noise:0.3", "shift/blur:1.5"} <= set(per_image)
    # a zero-strength shift is the test split itself: the same numbers, image by image, and no feature moves
    assert torch.equal(per_image["shift/noise:0"], per_image["model"])
    keys = feature_keys(2, logits=False)
    for key in keys:
        assert rows[(f"susceptibility/noise:0/{key}", "hellinger", "mean")]["value"] == pytest.approx(0, abs=1e-6)
        moved = rows[(f"susceptibility/noise:0.3/{key}", "hellinger", "mean")]
        assert 0 < moved["value"] < 1 and moved["ci_low"] <= moved["value"] <= moved["ci_high"]
        assert moved["n"] == cfg.data.test_size
    # eval.erf: the encoder keys' ERFs, trained and at a random init, against their theoretical field
    for source in ("erf", "erf_init"):
        for key in ("enc0", "enc1", "enc2"):
            assert rows[(f"{source}/{key}", "size95", "mean")]["n"] == 2
            assert rows[(f"{source}/{key}", "size95", "mean")]["value"] <= rows[(f"{source}/{key}", "theoretical",
                                                                                  "mean")]["value"] + 1  # fmt: skip
    # noise of 0.3 (six times the built-in noise) moves the input layer's features measurably
    assert rows[("susceptibility/noise:0.3/enc0", "hellinger", "mean")]["ci_low"] > 0.05
    with pytest.raises(ValueError, match="eval.shifts: shift 'fog:1'"):
        EvalOptions(shifts=["fog:1"])
    # the report: changes under shift are paired differences (per_image.npz holds the shifted values)
    results = collect([tmp_path])
    (model,) = results.models
    assert results.notes == []
    change = results.difference((model, "shift/noise:0.3"), (model, "model"))
    assert change.paired and change.low <= change.value <= change.high
    make_report([tmp_path], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| noise:0.3 (px) | noise:0.3 change |" in text and "Domain susceptibility" in text
    assert (tmp_path / "report" / "report_susceptibility.png").is_file()
