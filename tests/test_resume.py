"""Nothing lost: last.ckpt is the last epoch, a killed run resumes into the same run, one process per run directory,
a NaN loss stops the run, and data order and augmentation are functions of (seed, epoch, index)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.fixtures_data import write_folder
from tests.helpers import TINY, compose_train, run_cli
from unetlab.data.sampling import EpochShuffle, split_key
from unetlab.data.transforms import Geometry
from unetlab.runs.run_dir import RunDirInUse, hold_run_dir
from unetlab.training.callbacks import NonFiniteLoss
from unetlab.training.train import train

STEPS_PER_EPOCH = 4  # the tiny experiment: 32 training images, batches of 8


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_last_checkpoint_is_the_final_epoch_when_val_dice_stops_improving(tmp_path):
    # lr=0: the weights never change, so val/dice never improves after the first epoch.
    metrics = train(compose_train(tmp_path / "run", "trainer.max_epochs=3", "task.optimizer.lr=0"))
    checkpoints = tmp_path / "run" / "checkpoints"
    last = load(checkpoints / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 3 * STEPS_PER_EPOCH)
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-000.ckpt"]  # the best stays the best
    assert metrics["epochs"] == 3


def test_epoch_shuffle_is_a_function_of_seed_and_epoch(monkeypatch):
    dataset = list(range(10))
    sampler = EpochShuffle(dataset, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert sorted(index for index, _ in first) == dataset
    assert list(EpochShuffle(dataset, seed=3)) != first  # epoch 0
    again = EpochShuffle(dataset, seed=3)
    torch.manual_seed(123)  # the global generators play no part
    again.set_epoch(1)
    assert list(again) == first
    sampler.set_epoch(2)
    assert [i for i, _ in sampler] != [i for i, _ in first]
    assert dict(sampler)[0] != dict(first)[0]  # another epoch, another augmentation seed for the same image
    other_seed = EpochShuffle(dataset, seed=4)
    other_seed.set_epoch(1)
    assert list(other_seed) != first

    # Under DDP each rank takes a disjoint share of the same permutation, padded to equal lengths.
    shards = []
    for rank in range(3):
        monkeypatch.setattr(EpochShuffle, "_world", lambda self, rank=rank: (rank, 3))
        shard = EpochShuffle(dataset, seed=3)
        shard.set_epoch(1)
        shards.append(list(shard))
        assert len(shard) == len(shards[-1]) == 4
    assert sorted({key for shard in shards for key in shard}) == sorted(first)


def test_augmentation_depends_only_on_the_item_key():
    geometry = Geometry(image_size=16, mode="crop", multiple=4, train=True, augment=True)
    image, mask = torch.arange(3 * 24 * 20, dtype=torch.float32).reshape(3, 24, 20), torch.zeros(24, 20).long()
    outputs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        outputs.append(geometry(image, mask, split_key((5, 987654321))[1])[0])
    assert torch.equal(outputs[0], outputs[1])
    others = {tuple(geometry(image, mask, split_key((5, seed))[1])[0].flatten()[:4].tolist()) for seed in range(8)}
    assert len(others) > 1  # the item seed does drive the crop and the flips
    assert split_key(7) == (7, None)


class PoisonInSecondEpoch(L.Callback):
    """Makes the weights NaN at the start of the second epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = compose_train(
        tmp_path / "run", "trainer.max_epochs=3", "+callbacks.poison._target_=tests.test_resume.PoisonInSecondEpoch"
    )
    with pytest.raises(
        NonFiniteLoss,
        match=r"became nan at epoch 2, step 5 .*task.optimizer.lr=0.0003; checkpoints/last.ckpt still holds epoch 1$",
    ):
        train(cfg)
    last = load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_huge_learning_rate_is_one_line_naming_epoch_and_step(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("unetlab-train", *TINY, "task.optimizer.lr=1e30", f"hydra.run.dir={run}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "error" in line]
    assert line.startswith("unetlab-train: error: the training loss became") and "at epoch 1, step" in line
    assert "task.optimizer.lr=1e+29" in line and line.endswith("no epoch had finished, so no checkpoint was written")
    assert not (run / "metrics.json").exists()


def test_a_run_dir_with_another_config_is_refused(tmp_path):
    train(compose_train(tmp_path / "run"))
    with pytest.raises(RunDirInUse, match=r"holds a run with another config \(model\.depth=2 \(this command: 3\)"):
        train(compose_train(tmp_path / "run", "model.depth=3"))
    # Presentation keys may change: the finished run is found and not trained again.
    train(compose_train(tmp_path / "run", "trainer.enable_model_summary=false"))


def hold_in_subprocess(run_dir: Path) -> subprocess.Popen:
    """A process that holds ``run_dir`` until killed; returns once it holds it."""
    code = f"import time; from unetlab.runs.run_dir import hold_run_dir\nwith hold_run_dir({str(run_dir)!r}):\n"
    code += "    print('held', flush=True); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = hold_in_subprocess(run)
    try:
        with pytest.raises(RunDirInUse, match=rf"{run} is in use by pid {holder.pid} \("):
            with hold_run_dir(run):
                pass
        with pytest.raises(RunDirInUse, match=f"pid {holder.pid}"):
            train(compose_train(run))
        assert not (run / "checkpoints").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert "test/dice" in train(compose_train(run))  # the dead process's lock is taken over


@pytest.mark.slow
def test_cli_refuses_a_run_dir_in_use_with_one_line(tmp_path):
    run = tmp_path / "run"
    holder = hold_in_subprocess(run)
    try:
        proc = run_cli("unetlab-train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, check=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"unetlab-train: error: {run} is in use by pid {holder.pid} (")
    assert line.endswith("; wait for it to end, or stop it")
    assert not (run / "checkpoints").exists()


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if ready():
                break
        except (FileNotFoundError, RuntimeError, EOFError):
            pass  # not written yet
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_then_rerun_is_the_uninterrupted_run(tmp_path):
    """Folder data with random crops and flips: a killed and resumed run ends with the uninterrupted run's numbers."""
    root = write_folder(tmp_path / "data", {"train": 24, "val": 4, "test": 4})
    args = [
        *TINY, "data=folder", f"data.root={root}", "data.image_size=32", "data.resize=crop", "threads=1",
        "trainer.max_epochs=6",
    ]  # fmt: skip
    run_cli("unetlab-train", *args, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)

    run = tmp_path / "killed"
    script = Path(sys.executable).parent / "unetlab-train"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen(
        [str(script), *args, f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = run / "checkpoints" / "last.ckpt"
    kill_when(proc, lambda: last.exists() and load(last)["epoch"] >= 0)
    done = load(last)["epoch"] + 1
    assert 1 <= done < 6 and not (run / "metrics.json").exists()

    resumed = run_cli("unetlab-train", *args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert f"resuming {run} from checkpoints/last.ckpt ({done} epoch(s) done)" in resumed.stdout
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    again = json.loads((run / "metrics.json").read_text())
    assert again.keys() == whole.keys() and again["epochs"] == 6
    for key, value in whole.items():
        assert math.isclose(again[key], value, rel_tol=1e-4, abs_tol=1e-7), key
