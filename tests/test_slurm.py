"""SLURM: the resources a sweep's jobs ask for, DDP from SLURM's environment, and, against a real single-node SLURM
that the tests start (``scripts/slurm_local.sh``), a sweep through ``hydra/launcher=slurm``, a request SLURM can never
run, a two-rank DDP job through ``srun`` and a job requeued mid-run that resumes and ends as an uninterrupted run.

The real-SLURM tests skip, saying why, where SLURM cannot be installed or started (not root, no apt-get); .ci/run
installs it as it installs chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.helpers import CONFIG_DIR, TINY, run_cli
from unetlab.cli import register_resolvers
from unetlab.runs import slurm
from unetlab.runs.slurm_launcher import NEVER_REASONS, _last_error, parse_minutes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLURM_ENV = ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_TASKS_PER_NODE",
             "SLURM_NTASKS_PER_NODE", "SLURM_NNODES", "SLURM_JOB_NUM_NODES", "SLURM_CPUS_PER_TASK",
             "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_CPUS_ON_NODE")  # fmt: skip


@pytest.fixture
def no_slurm(monkeypatch):
    for key in SLURM_ENV:
        monkeypatch.setenv(key, "")  # recorded, so that whatever the test (or the code) sets is undone after it
        monkeypatch.delenv(key)
    return monkeypatch


def train_config(*overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


# ---- without SLURM ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], {"gpus_per_node": None, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 4}),
        (["threads=4", "data.num_workers=2"], {"gpus_per_node": None, "tasks_per_node": 1, "cpus_per_task": 6,
                                               "mem_gb": 24}),  # fmt: skip
        (["trainer=gpu"], {"gpus_per_node": 1, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 20}),
        (["trainer=ddp", "trainer.devices=4"], {"gpus_per_node": 4, "tasks_per_node": 4, "cpus_per_task": 1,
                                                "mem_gb": 80}),  # fmt: skip
        (["trainer.accelerator=cpu", "trainer.strategy=ddp", "trainer.devices=2"],
         {"gpus_per_node": None, "tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 8}),
    ],
)  # fmt: skip
def test_a_job_asks_for_what_its_trainer_needs(overrides, expected):
    cfg = train_config("hydra/launcher=slurm", "hydra.launcher.partition=cpu", *overrides)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.unetlab_launcher.UnetlabSlurmLauncher"
    assert {key: launcher[key] for key in expected} == expected  # the ${slurm:KEY} resolver, from the job's config
    assert launcher.partition == "cpu"
    given = train_config("hydra/launcher=slurm", "hydra.launcher.mem_gb=64", "hydra.launcher.gpus_per_node=2")
    assert (given.hydra.launcher.mem_gb, given.hydra.launcher.gpus_per_node) == (64, 2)  # the command line wins


def test_srun_tasks_set_devices_and_nodes(no_slurm, capsys):
    cfg = train_config("trainer.accelerator=cpu")
    assert slurm.slurm_ddp(cfg) is None and cfg.trainer.devices == 1  # outside SLURM: nothing changes
    for key, value in {"SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "ddp", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4",
                       "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_NNODES": "2"}.items():  # fmt: skip
        no_slurm.setenv(key, value)
    line = slurm.slurm_ddp(cfg)
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy) == (2, 2, "ddp")
    assert line.endswith("trainer.devices=2 trainer.num_nodes=2 trainer.strategy=ddp")
    assert os.environ["SLURM_NTASKS_PER_NODE"] == "2"  # what Lightning reads (srun -n sets only SLURM_TASKS_PER_NODE)
    no_slurm.setenv("SLURM_TASKS_PER_NODE", "3,1")
    no_slurm.delenv("SLURM_NTASKS_PER_NODE")
    with pytest.raises(ValueError, match=r"unevenly over the nodes.*--ntasks-per-node"):
        slurm.slurm_ddp(train_config())
    no_slurm.delenv("SLURM_STEP_ID")  # the batch script itself (no srun): one process, nothing to set
    no_slurm.setenv("SLURM_TASKS_PER_NODE", "2(x2)")
    assert slurm.slurm_ddp(train_config()) is None


def test_a_jobs_torch_threads_are_the_cpus_slurm_gave_each_task(no_slurm):
    assert slurm.job_threads() is None  # outside SLURM: torch's default
    for key, value in {"SLURM_JOB_ID": "9", "SLURM_JOB_NAME": "train", "SLURM_CPUS_ON_NODE": "8"}.items():
        no_slurm.setenv(key, value)
    assert slurm.job_threads() == 8  # the batch script: one task
    for key, value in {"SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "4"}.items():
        no_slurm.setenv(key, value)
    assert slurm.job_threads() == 2  # srun -n 4 without -c: the node's 8 CPUs over its 4 tasks
    no_slurm.setenv("SLURM_CPUS_PER_TASK", "3")
    assert slurm.job_threads() == 3


def test_the_default_run_dir_is_the_job_id_inside_slurm(no_slurm):
    assert re.fullmatch(r"\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", slurm.run_dir_stamp())
    no_slurm.setenv("SLURM_JOB_ID", "1234")
    no_slurm.setenv("SLURM_JOB_NAME", "train")
    assert slurm.run_dir_stamp() == "slurm-1234"
    no_slurm.setenv("SLURM_ARRAY_JOB_ID", "1200")
    no_slurm.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert slurm.run_dir_stamp() == "slurm-1200_3"
    assert train_config().hydra.run.dir == "outputs/slurm-1200_3"  # a requeued job finds its run directory again
    no_slurm.setenv("SLURM_JOB_NAME", "interactive")  # salloc/srun --pty sessions are not batch jobs
    assert slurm.job_id() is None


def test_a_failed_jobs_error_line_is_read_from_its_log(tmp_path):
    log = tmp_path / "job.err"
    log.write_text("warning: x\nunetlab-train: error: data.image_size=6 is not a multiple\nsrun: error: Exited\n")
    assert _last_error(log) == "unetlab-train: error: data.image_size=6 is not a multiple"
    assert _last_error(tmp_path / "none.err").startswith("no log")
    assert "PartitionConfig" in NEVER_REASONS and "Resources" not in NEVER_REASONS  # waiting for a free node is fine


def test_slurm_time_limits_read_in_minutes():
    cases = {"30": 30, "30:15": 30, "4:00:00": 240, "1-00:00:00": 1440, "1-12": 2160, "2-04:30": 3150,
             "infinite": None, "UNLIMITED": None, "n/a": None}  # fmt: skip
    assert {text: parse_minutes(text) for text in cases} == cases


# ---- against a real SLURM --------------------------------------------------------------------------------------


def _cannot_start() -> str | None:
    if shutil.which("slurmctld") is None and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        return "SLURM is not installed and cannot be (apt-get install slurm-wlm munge needs root)"
    if os.geteuid() != 0:
        return "scripts/slurm_local.sh runs the SLURM daemons as root"
    return None


@pytest.fixture(scope="module")
def cluster():
    """A single-node SLURM (``scripts/slurm_local.sh start``); its ``SLURM_CONF`` is set for the module's commands."""
    reason = _cannot_start()
    if reason:
        pytest.skip(f"real SLURM: {reason}")
    started = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "start"], capture_output=True,
                             text=True, timeout=600)  # fmt: skip
    if started.returncode != 0:
        pytest.skip(f"real SLURM: scripts/slurm_local.sh start failed: {started.stderr.strip()[-300:]}")
    conf = started.stdout.split("SLURM_CONF=")[1].split()[0]
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    subprocess.run(["scancel", "--user", "root"], capture_output=True)
    if "already running" not in started.stdout:  # stop what this module started
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop"], capture_output=True, timeout=60)
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


def squeue_states(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def wait_gone(job: str, timeout: float, hurry: bool = False) -> None:
    """Until ``job`` has left the queue; ``hurry``: a requeued job starts again at once, not after SLURM's delay."""
    end = time.time() + timeout
    while time.time() < end:
        state = squeue_states(job)
        if not state:
            return
        if hurry and state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(0.5)
    subprocess.run(["scancel", job], capture_output=True)
    raise AssertionError(f"SLURM job {job} still queued after {timeout} s")


def sbatch(script: str, folder: Path) -> str:
    path = folder / "job.sh"
    path.write_text("#!/bin/bash\n" + script)
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, cwd=folder, check=True)
    return done.stdout.strip().split(";")[0]


@pytest.mark.slow
def test_a_sweep_runs_as_slurm_jobs_with_only_the_partition_given(cluster, tmp_path):
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0]
    name = partition.rstrip("*")
    # a partition limit shorter than the default timeout_min (240): the jobs ask for the partition's, not pend for ever
    subprocess.run(["scontrol", "update", f"PartitionName={name}", "MaxTime=30"], check=True)
    sweep = tmp_path / "sweep"
    start = time.time()
    try:
        proc = run_cli("unetlab-train", "-m", *TINY, "hydra/launcher=slurm", f"hydra.launcher.partition={name}",
                       "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)  # fmt: skip
    finally:
        subprocess.run(["scontrol", "update", f"PartitionName={name}", "MaxTime=INFINITE"], check=True)
    seconds = time.time() - start
    assert "sacct" not in proc.stdout + proc.stderr  # no warnings where accounting is off
    assert re.search(r"SLURM jobs \d+_0, \d+_1 \(follow them: squeue -j \d+\)", proc.stdout + proc.stderr)
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and "test/hd95" in metrics
    script = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "--gpus" not in script and "--gres" not in script  # no GPU asked for a CPU trainer
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --mem=4GB" in script and "#SBATCH --time=30" in script
    print(f"two-job sweep on SLURM: {seconds:.1f} s")


@pytest.mark.slow
def test_a_request_slurm_can_never_run_fails_at_once(cluster, tmp_path):
    cpus = os.cpu_count() * 8
    start = time.time()
    proc = run_cli("unetlab-train", "-m", *TINY, "hydra/launcher=slurm", f"hydra.launcher.cpus_per_task={cpus}",
                   "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, timeout=120,
                   check=False)  # fmt: skip
    assert proc.returncode == 1
    assert "it waits for PartitionConfig" in proc.stderr and f"cpus_per_task={cpus}" in proc.stderr
    assert time.time() - start < 60
    job = re.search(r"SLURM cannot run job (\d+)", proc.stderr).group(1)
    assert squeue_states(job) == ""  # the sweep's jobs were cancelled


@pytest.mark.slow
def test_ddp_over_srun_takes_devices_and_nodes_from_slurm(cluster, tmp_path):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    bars_default = [override for override in TINY if "progress_bar" not in override]  # a log file: epoch lines
    command = " ".join([str(BIN / "unetlab-train"), *bars_default, "data.train_size=64", "trainer.max_epochs=2",
                        f"hydra.run.dir={run}"])  # fmt: skip
    job = sbatch(f"#SBATCH -o {log}\n#SBATCH -n 2 -c 1 --mem=4G\nsrun -n 2 {command}\n", tmp_path)
    wait_gone(job, timeout=300)
    text = log.read_text()
    assert "SLURM started 2 tasks on 1 node(s): trainer.devices=2 trainer.num_nodes=1 trainer.strategy=ddp" in text
    assert "Exited with exit code" not in text, text[-2000:]
    assert "] run epoch 2/2: " in text and "it/s]" not in text  # no progress bars in a log file
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "devices: 2" in saved and "strategy: ddp" in saved
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    # 64 images in batches of 8 over 2 ranks: 4 steps per epoch (one process would take 8)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * 4


@pytest.mark.slow
def test_the_launcher_gives_a_ddp_job_a_task_per_device(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("unetlab-train", "-m", *TINY, "trainer.strategy=ddp", "trainer.devices=2", "data.train_size=64",
            "hydra/launcher=slurm", "seed=0", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)  # fmt: skip
    assert "#SBATCH --ntasks-per-node=2" in next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    out = "".join(path.read_text() for path in sweep.glob(".submitit/*/*_log.out"))
    assert "SLURM started 2 tasks on 1 node(s): trainer.devices=2" in out
    # 64 images in batches of 8 over 2 ranks: 4 steps in its one epoch
    assert torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


EPOCHS = 5
REQUEUED = [*TINY, "data.train_size=256", f"trainer.max_epochs={EPOCHS}", "threads=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """metrics.json of the requeue tests' run, trained without a break (outside SLURM)."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    run_cli("unetlab-train", *REQUEUED, f"hydra.run.dir={folder / 'run'}", cwd=folder)
    return json.loads((folder / "run" / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("how", ["time-limit signal", "scontrol requeue"])
def test_a_requeued_job_resumes_and_ends_as_an_uninterrupted_run(cluster, uninterrupted, tmp_path, how):
    epochs, common = EPOCHS, REQUEUED
    run, log = tmp_path / "run", tmp_path / "job.log"
    command = " ".join([str(BIN / "unetlab-train"), *common, f"hydra.run.dir={run}"])
    job = sbatch(f"#SBATCH -o {log}\n#SBATCH --open-mode=append --requeue -c 1 --mem=2G\nsrun {command}\n", tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    end = time.time() + 120
    while not last.exists() and time.time() < end:  # one epoch done
        time.sleep(0.1)
    assert last.exists(), log.read_text() if log.exists() else "no log"
    if how == "time-limit signal":  # what sbatch --signal=USR1@90 sends before the time limit
        subprocess.run(["scancel", f"--signal={signal.SIGUSR1.name.removeprefix('SIG')}", job], check=True)
    else:  # SLURM requeues it itself (an admin, a preemption)
        subprocess.run(["scontrol", "requeue", job], check=True)
    wait_gone(job, timeout=300, hurry=True)
    text = log.read_text()
    assert re.search(r"resuming \S+ from checkpoints/last.ckpt \(\d epoch\(s\) done\)", text), text[-3000:]
    assert f"SLURM job {job} was requeued" in text
    if how == "time-limit signal":
        assert f"signal SIGUSR1 in SLURM job {job}" in text
    finished = [int(n) for n in re.findall(rf"\] run epoch (\d+)/{epochs}:", text)]
    assert sorted(finished) == list(range(1, epochs + 1)), finished  # every epoch trained to its end exactly once
    got, want = json.loads((run / "metrics.json").read_text()), uninterrupted
    assert got.keys() == want.keys() and got["epochs"] == epochs
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-4), key
