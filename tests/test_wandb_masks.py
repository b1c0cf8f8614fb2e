"""wandb's segmentation panel: ``val/masks`` during training (``WandbMasks``) and ``eval/overlays`` after it, read back
from the offline run's files; and nothing at all without the wandb logger."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import compose_train, finished_records
from unetlab.grid.job import train_then_evaluate
from unetlab.metrics.functional import METRIC_NAMES
from unetlab.runs.checkpoint import load_run
from unetlab.runs.results import read_per_image
from unetlab.runs.wandb_masks import class_labels, display_image, predict
from unetlab.training import wandb_masks
from unetlab.training.train import train
from unetlab.training.wandb_masks import WandbMasks


def history(records: list) -> list[dict]:
    """Each ``log`` call of the run as ``{key: value}``; wandb splits media values into ``<key>/<field>`` items."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


def artifact_files(records: list, name: str) -> dict[str, Path]:
    """Path in the artifact -> staged local file, for the run's artifact whose name holds ``name``."""
    for record in records:
        if record.WhichOneof("record_type") == "artifact" and name in record.artifact.name:
            return {entry.path: Path(entry.local_path) for entry in record.artifact.manifest.contents}
    raise AssertionError(f"no artifact named like {name} among the run's records")


def png(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image).astype(np.int64))


def test_masks_and_overlays_reach_the_offline_wandb_run(tmp_path, monkeypatch):
    """3 epochs at every_n_epochs=2: val/masks at epochs 2 and 3 (the last), num_images=3 images each with the val
    masks as ground truth and the network's argmax as prediction; then eval/overlays of 4 test images with that
    image's hd95 and assd from per_image.npz."""
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # a table's artifact files are staged there
    run_dir = tmp_path / "run"
    overrides = ["logger=wandb", "logger.mode=offline", "trainer.max_epochs=3", "callbacks.wandb_masks.num_images=3"]
    evaluation = ["+eval.probes=false", "+eval.floors=false", "+eval.ablate_modes=[mean]", "+eval.progress=false"]
    cfg = compose_train(run_dir, *overrides, *evaluation)
    assert cfg.callbacks.wandb_masks.every_n_epochs == 2
    train_then_evaluate(cfg)
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (records_file,) = offline.glob("run-*.wandb")
    records = finished_records(records_file)
    files = offline / "files"

    logged = [row for row in history(records) if "val/masks/all_masks" in row]
    assert [row["val/masks/captions"] for row in logged] == [
        [f"val {i}, epoch {epoch}" for i in range(3)] for epoch in (2, 3)
    ]
    assert [row["trainer/global_step"] for row in logged] == [8, 12]  # 4 batches an epoch, as Lightning logs
    last = load_run(run_dir / "checkpoints" / "last.ckpt", cfg=cfg)  # the weights of the last epoch's masks
    val = [last.datamodule.datasets["val"][i] for i in range(3)]
    predictions, num_classes = predict(last.net.to(memory_format=torch.channels_last), [image for image, _ in val])
    assert num_classes == 2
    for row in logged:
        assert row["val/masks/count"] == 3 and len(row["val/masks/filenames"]) == 3
        assert all((files / name).is_file() for name in row["val/masks/filenames"])
        for (_, mask), masks in zip(val, row["val/masks/all_masks"]):
            assert (files / masks["ground_truth"]["path"]).parent == files / "media" / "images" / "mask" / "val"
            assert torch.equal(png(files / masks["ground_truth"]["path"]), mask)
    for prediction, masks in zip(predictions, logged[-1]["val/masks/all_masks"]):
        assert torch.equal(png(files / masks["prediction"]["path"]), prediction)
    assert len({masks["ground_truth"]["path"] for masks in logged[-1]["val/masks/all_masks"]}) == 3  # 3 different

    (table_file,) = (files / "media" / "table" / "eval").glob("overlays_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["image", "overlay", "hd95", "assd"]
    per_image = read_per_image(run_dir / "per_image.npz")["model"]  # (M, C-1, 9)
    for i, row in enumerate(table["data"]):
        expected = [per_image[i, :, METRIC_NAMES.index(metric)].mean().item() for metric in ("hd95", "assd")]
        assert row[0] == i and row[2:] == pytest.approx(expected, rel=1e-6)
    assert len(table["data"]) == 4
    # The images themselves travel in the table's artifact (staged until `wandb sync`).
    staged = artifact_files(records, "evaloverlays")
    full = json.loads(staged["eval/overlays.table.json"].read_text())
    best = load_run(next((run_dir / "checkpoints").glob("best-*.ckpt")), cfg=cfg)
    test = [best.datamodule.datasets["test"][i] for i in range(4)]
    predictions, _ = predict(best.net.to(memory_format=torch.channels_last), [image for image, _ in test])
    for (_, mask), prediction, row in zip(test, predictions, full["data"]):
        assert torch.equal(png(staged[row[1]["masks"]["ground_truth"]["path"]]), mask)
        assert torch.equal(png(staged[row[1]["masks"]["prediction"]["path"]]), prediction)
    classes = json.loads(next(p for name, p in staged.items() if name.endswith(".classes.json")).read_text())
    assert {c["id"]: c["name"] for c in classes["class_set"]} == {0: "class 0", 1: "class 1", 255: "ignore"}


def test_without_wandb_the_callback_logs_nothing(tmp_path, monkeypatch):
    def predict(*args, **kwargs):
        raise AssertionError("WandbMasks ran the network without a wandb logger")

    monkeypatch.setattr(wandb_masks, "predict", predict)
    run_dir = tmp_path / "run"
    cfg = compose_train(run_dir, "logger=csv", "trainer.max_epochs=2", "callbacks.wandb_masks.every_n_epochs=1")
    assert cfg.callbacks.wandb_masks._target_ == "unetlab.training.wandb_masks.WandbMasks"
    train(cfg)
    assert (run_dir / "metrics.json").is_file()
    assert not (run_dir / "wandb").exists()


@pytest.mark.parametrize(("key", "value"), [("every_n_epochs", 0), ("num_images", -1), ("every_n_epochs", 1.5)])
def test_bad_keys_are_named(key, value):
    with pytest.raises(ValueError, match=re.escape(f"callbacks.wandb_masks.{key}={value!r} must be an integer >= 1")):
        WandbMasks(**{key: value})


def test_class_labels_and_display_image():
    assert class_labels(3, ("background", "cat")) == {0: "background", 1: "cat", 2: "class 2", 255: "ignore"}
    grey = torch.tensor([[[0.0, 0.5], [1.0, 1.2]]])  # (1, 2, 2) in [0, 1] but for noise: shown as is, clipped
    rgb = display_image(grey)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb == np.array([[0, 128], [255, 255]], dtype=np.uint8)[..., None]).all()
    zscored = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]]).expand(3, 2, 2)  # stretched from its min to its max
    assert display_image(zscored)[..., 0].tolist() == [[0, 128], [191, 255]]
