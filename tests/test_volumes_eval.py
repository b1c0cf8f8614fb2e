"""Volumes end to end: a 3D U-Net trained on shapes3d, then evaluated (probes, floors, ablations, Shapley, objects)."""

import json
import math

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.helpers import CONFIG_DIR
from unetlab import UNet, sources
from unetlab.erf import effective_receptive_fields, mass_radius
from unetlab.evaluation.evaluate import run_eval
from unetlab.explain.viz import run_viz
from unetlab.grid.run import with_data_group
from unetlab.metrics.functional import METRIC_NAMES
from unetlab.report import explorer_data as explorer_data_module
from unetlab.report.collect import collect
from unetlab.report.explorer import write_explorer
from unetlab.report.explorer_data import explorer_data
from unetlab.runs.label_maps import LabelMapRecorder, read_label_maps, read_spacing, worst_slice
from unetlab.runs.results import read_per_image, read_results
from unetlab.training.train import train

VOLUME = [
    "data=shapes3d", "data.volume_size=[8,16,16]", "data.train_size=16", "data.val_size=4", "data.test_size=6",
    "data.batch_size=4", "model.depth=2", "model.base_channels=4", "trainer.max_epochs=1", "logger=csv",
    "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
]  # fmt: skip


def compose_volume(run_dir, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*VOLUME, f"paths.output_dir={run_dir}", *overrides])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("volumes") / "run"
    cfg = compose_volume(run_dir)
    metrics = train(cfg)
    rows = run_eval(run_dir / "checkpoints" / "last.ckpt", OmegaConf.create({"probe_steps": 5, "progress": False}))
    return cfg, run_dir, metrics, rows


def test_a_3d_unet_trains_on_shapes3d_with_distances_in_mm(evaluated):
    cfg, run_dir, metrics, _ = evaluated
    assert metrics["epochs"] == 1 and "test/hd95" in metrics
    table = read_results(run_dir / "results.csv")
    model = [row for row in table if row["source"] == sources.MODEL]
    assert {row["unit"] for row in model if row["metric"] == "hd95"} == {"mm"}
    assert {row["image_size"] for row in model} == {"8x16x16"}
    assert all(int(row["n"]) == 6 for row in model if row["class"] == "mean" and row["metric"] in METRIC_NAMES)


def test_every_measurement_has_its_rows_on_volumes(evaluated):
    _, run_dir, _, rows = evaluated
    found = {row["source"] for row in rows}
    expected = {sources.MODEL, *(sources.floor(level) for level in range(3))}
    expected |= {sources.probe(key) for key in ("enc0", "enc1", "enc2", "dec1", "dec0")}
    expected |= {sources.ablation("lowpass:1", levels) for levels in ((0,), (1,), (0, 1))}
    expected |= {sources.shapley("mean", level) for level in (0, 1)}
    assert expected <= found
    assert any(sources.is_objects(source) for source in found)  # per-object rows: 6-connected objects in 3D
    # Shapley values sum, image by image, to v(all skips) - v(no skips)
    per_image = read_per_image(run_dir / "per_image.npz")
    hd95 = METRIC_NAMES.index("hd95")
    total = sum(per_image[sources.shapley("lowpass:1", level)][..., hd95] for level in (0, 1))
    gap = per_image[sources.MODEL][..., hd95] - per_image[sources.ablation("lowpass:1", (0, 1))][..., hd95]
    assert np.allclose(total, gap, atol=1e-4)
    # the floor of level 0 is the ground truth itself
    floor0 = next(r for r in rows if r["source"] == sources.floor(0) and r["metric"] == "hd95" and r["class"] == "mean")
    assert floor0["value"] == 0.0
    maps = read_label_maps(run_dir / "label_maps.npz")
    assert maps[0]["truth"].shape == (8, 16, 16) and maps[0]["image"].shape == (8, 16, 16, 3)
    assert maps[0]["probe/enc1"].shape == (8, 16, 16)
    assert read_spacing(run_dir / "label_maps.npz") == pytest.approx((2.5, 0.8, 0.8))


def test_2d_model_settings_on_volumes_give_one_line(tmp_path):
    cfg = compose_volume(tmp_path / "run", "+model.spatial_dims=2")
    with pytest.raises(ValueError, match=r"model.spatial_dims=2 but the data are volumes \(3D\)"):
        train(cfg)
    cfg = compose_volume(tmp_path / "run2", "data.volume_size=[12,16,16]", "model.depth=3")
    with pytest.raises(ValueError, match=r"input size 12x16x16 is not a multiple of 2\*\*depth = 8"):
        train(cfg)


def test_a_volume_is_shown_at_its_slice_of_worst_error(tmp_path):
    truth = np.zeros((4, 6, 6), dtype=np.uint8)
    truth[1:3, 1:5, 1:5] = 1
    model = truth.copy()
    model[2, 0, :] = 1  # six voxels wrong in slice 2, one in slice 1
    model[1, 0, 0] = 1
    recorder = LabelMapRecorder(2, (2.5, 0.8, 0.8))
    recorder.add("truth", torch.from_numpy(truth)[None])
    recorder.add("model", torch.from_numpy(model)[None])
    recorder.add_images(torch.rand(1, 1, 4, 6, 6))
    recorder.write(tmp_path / "label_maps.npz")
    (maps,) = read_label_maps(tmp_path / "label_maps.npz")
    assert np.array_equal(maps["model"], model) and maps["image"].shape == (4, 6, 6, 3)
    assert worst_slice(maps) == 2
    assert worst_slice({"truth": truth, "model": truth}) == 1  # no error: the slice with the most foreground


def test_the_explorer_holds_each_chosen_volume_slice_by_slice_within_its_budget(evaluated, tmp_path, monkeypatch):
    _, run_dir, _, _ = evaluated
    results = collect([run_dir])
    data = explorer_data(results, [run_dir], "volumes")
    volumes = [image for image in data["images"] if image["slice"] == image["slice_range"][0]]
    assert len(data["images"]) == 8 * len(volumes)  # every slice of the 8-slice volumes
    assert all(image["slice_range"] == [0, 7] and image["slices"] == 8 for image in data["images"])
    maps = read_label_maps(run_dir / "label_maps.npz")
    for image in volumes:
        assert image["worst_slice"] == worst_slice(maps[image["index"]])
    assert len(data["models"][0]["predictions"]) == len(data["images"])
    write_explorer(data, tmp_path / "explorer.html")  # the schema's checks of slices hold
    # a budget for three slices: each volume shows the three around its slice of worst error
    per_slice = len(explorer_data_module.encode_labels(maps[0]["truth"][0])) * (2 + 3 + 1 + 5) * len(volumes)
    monkeypatch.setattr(explorer_data_module, "SLICE_BUDGET", 3 * per_slice)
    small = explorer_data(results, [run_dir], "volumes")
    assert len(small["images"]) == 3 * len(volumes)
    for image in small["images"]:
        low, high = image["slice_range"]
        assert high - low == 2 and low <= image["worst_slice"] <= high and low <= image["slice"] <= high
        assert low == max(0, min(image["worst_slice"] - 1, 8 - 3))


def test_a_preset_names_its_data_set_unless_the_command_line_does():
    assert with_data_group("shapes3d", ["trainer.max_epochs=1"]) == ["data=shapes3d", "trainer.max_epochs=1"]
    assert with_data_group("shapes3d", ["data=folder", "data.root=x"]) == ["data=folder", "data.root=x"]
    assert with_data_group(None, ["data.root=x"]) == ["data.root=x"]


def test_unit_pictures_of_a_3d_model_are_slices_through_each_field(evaluated, tmp_path):
    _, run_dir, _, _ = evaluated
    options = {"keys": ["enc1"], "channels": 2, "top_k": 3, "erf_images": 2, "progress": False}
    options["out_dir"] = str(tmp_path)
    paths = run_viz(run_dir / "checkpoints" / "last.ckpt", options)
    for name in ("fields", "erf_maps", "top3_enc1"):
        assert paths[name].is_file() and paths[name].stat().st_size > 1000
    summary = json.loads(paths["json"].read_text())
    erfs = [value for name, value in summary["fields"]["enc1"].items() if name.startswith("erf_")]
    assert len(erfs) == 2 and all(math.isfinite(erf["radius95"]) and len(erf["unit"]) == 2 for erf in erfs)
    assert len(summary["top_units"]["enc1"]["unit_yx"][0][0]) == 3  # (z, y, x)
    explore = json.loads(paths["explore"].read_text())
    patches = explore["units"]["keys"]["enc1"]["channels"][0]["patches"]
    assert len(patches) == 3 and all(len(p["unit"]) == 3 for p in patches)  # (z, y, x) units of a volume


def test_3d_effective_fields_take_the_radius_over_the_volume():
    net = UNet(1, 2, depth=2, base_channels=4, spatial_dims=3)
    erfs = effective_receptive_fields(net, torch.rand(2, 1, 16, 16, 16), keys=["enc1", "enc2"])
    for erf in erfs.values():
        assert erf.grad_map.shape == (16, 16) and len(erf.centre) == 2  # the slice through the unit's centre
        assert 0 <= erf.radius95 <= (erf.theoretical.size - 1) / 2 + erf.theoretical.jump
    weights = torch.zeros(5, 5, 5, dtype=torch.float64)
    weights[2, 2, 2], weights[0, 2, 2] = 1.0, 1.0  # half the mass two slices away
    assert mass_radius(weights, (2.0, 2.0, 2.0), 0.5) == 0 and mass_radius(weights, (2.0, 2.0, 2.0), 0.95) == 2
