import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from tests.helpers import TINY, compose_train, run_cli
from unetlab.metrics import BoundaryMetrics
from unetlab.training.train import train

# A few more optimizer steps than experiment=tiny's single epoch of 4: enough to learn the shapes, about a second.
SHORT_RUN = ["trainer.max_epochs=5", "data.batch_size=4", "task.optimizer.lr=0.01"]


def background_metrics(cfg: DictConfig) -> dict[str, float]:
    """The test split's metrics (``dice``, ``dice/1``, ...) of predicting background (class 0) everywhere."""
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    metrics = BoundaryMetrics(datamodule.num_classes, ignore_index=cfg.task.ignore_index)
    for _, masks in datamodule.test_dataloader():
        metrics.update(torch.zeros_like(masks), masks)
    return {key: float(value) for key, value in metrics.compute().items()}


def trained_and_untrained(root: Path, *overrides: str) -> tuple[dict, dict, dict]:
    """Metrics of a run trained as configured (``root/trained``), of the same run at initialisation (0 epochs:
    same seed, so the same initial weights, tested as they are), and of predicting background everywhere."""
    trained = train(compose_train(root / "trained", *overrides))
    untrained = train(compose_train(root / "untrained", *overrides, "trainer.max_epochs=0"))
    assert untrained["epochs"] == 0 and trained["epochs"] >= 1
    return trained, untrained, background_metrics(compose_train(root / "background", *overrides))


def test_train_writes_checkpoints_and_metrics(tmp_path):
    metrics = train(compose_train(tmp_path / "run"))
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for key in ("val/dice", "val/iou", "val/loss", "val/hd95", "test/dice", "test/hd95", "test/nsd", "params"):
        assert key in saved, key
    assert (run / "csv" / "metrics.csv").is_file()


def test_a_short_run_learns(tmp_path):
    trained, untrained, background = trained_and_untrained(tmp_path, *SHORT_RUN)
    assert trained["epochs"] == 5
    assert trained["test/loss"] < 0.9 * untrained["test/loss"]  # the same weights before training score worse
    assert trained["test/dice"] > background["dice"] + 0.25  # and it finds objects: well above all-background
    assert trained["test/dice"] > untrained["test/dice"] + 0.25


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    a = train(compose_train(tmp_path / "a", "seed=1"))
    b = train(compose_train(tmp_path / "b", "seed=1"))
    c = train(compose_train(tmp_path / "c", "seed=2"))
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert a == b and a["val/loss"] != c["val/loss"]


def test_finished_run_is_not_trained_again(tmp_path, capsys):
    cfg = compose_train(tmp_path / "run")
    first = train(cfg)
    mtime = (tmp_path / "run" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert train(cfg) == first
    assert "is finished" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.depth=3", "model.skips=[5]"],
            r"model.skips=\[5\] names level 5, but a depth-3 U-Net has skips at levels 0..2",
        ),
        (["model.depth=0"], r"model.depth=0 is not allowed; use an integer 1..6"),
        (["model.depth=7"], r"model.depth=7 is not allowed; use an integer 1..6"),
        (["model.depth=3", "data.image_size=36"], r"data.image_size=36 is not a multiple of 2\*\*model.depth = 8"),
        (["model.skips=sideways"], r"model.skips='sideways' is not understood"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(compose_train(tmp_path / "run", *overrides))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_cli_run_help_and_bad_config(tmp_path):
    help_text = run_cli("unetlab-train", "--help", cwd=tmp_path).stdout
    for group in ("data: ", "model: ", "trainer: ", "logger: csv, none, wandb", "experiment: "):
        assert group in help_text
    run = tmp_path / "run"
    run_cli("unetlab-train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "test/hd95" in json.loads((run / "metrics.json").read_text())
    again = run_cli("unetlab-train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path)
    assert "is finished" in again.stdout
    bad = run_cli(
        "unetlab-train", *TINY, "model.depth=7", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path, check=False
    )
    assert bad.returncode != 0
    assert "model.depth=7 is not allowed; use an integer 1..6" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_multirun_sweep_writes_one_run_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(
        "unetlab-train",
        "-m",
        *TINY,
        "model.depth=1,2",
        "model.skips=all,none",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 4
    params = {json.loads((r / "metrics.json").read_text())["params"] for r in runs}
    assert len(params) == 4  # depth and skip set both change the architecture
