"""Scale-out: DDP on CPU (gloo) gives one process's numbers, Hydra launchers run every job of a sweep."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.helpers import CONFIG_DIR, TINY, compose_train, run_cli
from unetlab.cli import check_launcher, register_resolvers
from unetlab.grid.job import train_then_evaluate
from unetlab.metrics import BoundaryMetrics
from unetlab.runs.checkpoint import load_run
from unetlab.training.train import train

# Two CPU processes; ddp_spawn because strategy=ddp would re-run pytest itself (shared/ECOSYSTEM.md B3).
DDP = ["trainer.strategy=ddp_spawn", "trainer.devices=2", "trainer.accelerator=cpu"]


def one_process_metrics(ckpt: Path, cfg, split: str, indices: list[int] | None = None) -> dict[str, float]:
    """BoundaryMetrics of the checkpoint's network over ``split`` (or those images of it), in this process."""
    run = load_run(ckpt, cfg=cfg)
    dataset = run.datamodule.datasets[split]
    metric = BoundaryMetrics(run.net.num_classes, tolerance=cfg.task.tolerance, ignore_index=cfg.task.ignore_index)
    with torch.no_grad():
        for index in range(len(dataset)) if indices is None else indices:
            image, mask = dataset[index]
            metric.update(run.net(image[None]).argmax(dim=1), mask[None])
    return {name: float(value) for name, value in metric.compute().items()}


@pytest.mark.slow
def test_ddp_spawn_gives_one_process_metrics_and_scores_each_test_image_once(tmp_path):
    run = tmp_path / "run"
    # 16 val images split evenly over the 2 ranks; 17 test images do not (9 + 8), where Lightning's
    # DistributedSampler would score image 0 twice. Enough steps in one epoch for a non-trivial Dice (with seed 0's
    # training order this short run still predicts all background, where every metric would agree trivially).
    cfg = compose_train(
        run, *DDP, "logger=none", "data.train_size=96", "data.batch_size=4", "task.optimizer.lr=0.01", "seed=1",
        "data.test_size=17", "eval={probes:false,floors:false,ablate_modes:[],progress:false}",
    )  # fmt: skip
    train_then_evaluate(cfg)  # as a grid job: train, then evaluate on rank 0
    metrics = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if not k.startswith("eval/")}
    saved = json.loads((run / "metrics.json").read_text())  # eval adds its eval/model/* numbers beside these
    assert {key: saved[key] for key in metrics} == pytest.approx(metrics)
    assert metrics["epochs"] == 1

    val = one_process_metrics(run / "checkpoints" / "last.ckpt", cfg, "val")
    assert val["dice"] > 0.1
    for name in ("dice", "hd95", "assd", "nsd", "bf1"):
        assert metrics[f"val/{name}"] == pytest.approx(val[name], abs=1e-5), name

    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    test = one_process_metrics(best, cfg, "test")
    padded = one_process_metrics(best, cfg, "test", indices=[*range(17), 0])
    assert padded["dice"] != pytest.approx(test["dice"], abs=1e-5)  # the check below could tell them apart
    for name in ("dice", "hd95", "assd", "nsd", "bf1"):
        assert metrics[f"test/{name}"] == pytest.approx(test[name], abs=1e-5), name

    with open(run / "results.csv") as file:
        rows = [r for r in csv.DictReader(file) if r["source"] == "model" and not r["metric"].endswith("_nonempty")]
    assert rows and {row["n"] for row in rows} == {"17"}


def test_csv_logger_with_ddp_spawn_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="logger=csv does not work with trainer.strategy=ddp_spawn"):
        train(compose_train(tmp_path / "run", *DDP))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_submitit_local_sweep_runs_every_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    run_cli("unetlab-train", "-m", *TINY, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}", "seed=0,1",
            cwd=tmp_path)  # fmt: skip
    results = [json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")]
    assert all("test/dice" in result for result in results)
    assert results[0]["val/loss"] != results[1]["val/loss"]  # two seeds, two trainings


@pytest.mark.slow
def test_joblib_sweep_gives_each_job_its_own_wandb_run(tmp_path):
    sweep = tmp_path / "sweep"
    # n_jobs=1 runs both jobs in one process, one after the other, as loky does when it reuses a worker:
    # a wandb.run left over from job 0 would swallow job 1.
    run_cli(
        "unetlab-train", "-m", *TINY, "logger=wandb", "logger.mode=offline", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={sweep}", "seed=0,1", cwd=tmp_path,
    )  # fmt: skip
    runs = {job: list((sweep / job / "wandb").glob("offline-run-*")) for job in ("0", "1")}
    assert [len(found) for found in runs.values()] == [1, 1], runs
    run_ids = {found[0].name.rsplit("-", 1)[1] for found in runs.values()}
    assert len(run_ids) == 2


def test_slurm_launcher_config_extends_the_plugin():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    register_resolvers()  # ${slurm:KEY}: the resources from the job's config (tests/test_slurm.py)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=gpu"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.unetlab_launcher.UnetlabSlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node) == ("gpu", 1, 1)
    assert launcher.signal_delay_s == 120 and launcher.max_num_timeout == 3  # submitit_slurm's keys, ours on top


@pytest.mark.parametrize(
    ("launcher", "module", "extra"),
    [
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ],
)
def test_missing_launcher_plugin_names_the_extra(monkeypatch, capsys, launcher, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    check_launcher("unetlab-train", ["-m", "model.depth=1,2", "hydra/launcher=basic"])  # needs no plugin
    with pytest.raises(SystemExit) as exit_info:
        check_launcher("unetlab-train", ["-m", "model.depth=1,2", f"hydra/launcher={launcher}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"unetlab-train: error: hydra/launcher={launcher} needs the submitit launcher: pip install 'unetlab[{extra}]'"
    )
