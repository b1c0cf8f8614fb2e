"""What a run reads from SLURM: the job it is in, the processes SLURM started for it, the resources a sweep's jobs ask
for, and requeueing. SLURM itself does the scheduling; nothing here starts, waits for or retries a job.

- ``job_resources(cfg)``: what ``hydra/launcher=slurm`` asks for per job, from the job's own config (the keys
  ``conf/hydra/launcher/slurm.yaml`` fills through the ``${slurm:KEY}`` resolver): GPUs only for a GPU trainer, one
  task per DDP process, CPUs for the torch threads and the loader processes, memory from the CPUs and GPUs.
- ``slurm_ddp(cfg)``: inside ``srun -n N`` (N > 1), the trainer's ``devices`` and ``num_nodes`` from SLURM's
  environment, so a user does not have to repeat them (and Lightning does not refuse ``-n`` without
  ``--ntasks-per-node``).
- ``job_threads()``: torch threads of a job that left ``threads`` unset: the CPUs SLURM gave each of its tasks.
- ``requeue()``: ask SLURM to requeue this job; the requeued job runs the same command, which resumes from
  ``checkpoints/last.ckpt`` (``unetlab.training.requeue`` calls it on the time-limit signal).
- ``run_dir_stamp()``: the default run directory's last part: ``slurm-<job id>`` inside a SLURM job (a requeued job
  finds its run again), else the date and time.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess

from omegaconf import DictConfig, OmegaConf

# Memory a job asks for (submitit's mem_gb, per node): this much per CPU of each task, and this much more per GPU.
MEM_GB_PER_CPU = 4
MEM_GB_PER_GPU = 16
GPU_ACCELERATORS = ("gpu", "cuda")


def job_id() -> str | None:
    """This SLURM job's id (``<array job>_<task>`` for an array task), or None outside a batch job (and in SLURM's
    interactive sessions, job name ``bash`` or ``interactive``, as Lightning treats them)."""
    if "SLURM_JOB_ID" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


def run_dir_stamp() -> str:
    """``slurm-<job id>`` inside a SLURM job, else ``<YYYY-MM-DD>/<HH-MM-SS>`` (now): the last part of the default
    run directory (``conf/train.yaml``: ``outputs/${run_stamp:}``), the same in every rank of a DDP job and after a
    requeue."""
    found = job_id()
    return f"slurm-{found}" if found else datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def _int(value, default: int) -> int:
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else default


def job_resources(cfg: DictConfig) -> dict[str, int | None]:
    """Per-job SLURM resources for a training config ``cfg``:

    - ``nodes``: ``trainer.num_nodes``;
    - ``gpus_per_node``: ``trainer.devices`` GPUs when ``trainer.accelerator`` is gpu or cuda, else None (none asked);
    - ``tasks_per_node``: one per DDP process (``trainer.devices`` under a ddp strategy, or with several GPUs), else 1;
    - ``cpus_per_task``: ``threads`` (1 when unset) plus ``data.num_workers``;
    - ``mem_gb``: ``MEM_GB_PER_CPU`` per CPU of every task plus ``MEM_GB_PER_GPU`` per GPU.

    ``trainer.devices=auto`` counts as one device (the submitting machine cannot see the nodes' GPUs).
    """
    trainer = cfg.get("trainer") or {}
    accelerator = str(trainer.get("accelerator", "cpu")).lower()
    devices = max(1, _int(trainer.get("devices", 1), 1))  # "auto": one
    ddp = str(trainer.get("strategy", "auto")).startswith("ddp")
    gpus = devices if accelerator in GPU_ACCELERATORS else 0
    tasks = devices if ddp or gpus > 1 else 1
    cpus = max(1, _int(cfg.get("threads"), 1)) + max(0, _int(OmegaConf.select(cfg, "data.num_workers", default=0), 0))
    return {
        "nodes": max(1, _int(trainer.get("num_nodes", 1), 1)),
        "gpus_per_node": gpus or None,
        "tasks_per_node": tasks,
        "cpus_per_task": cpus,
        "mem_gb": MEM_GB_PER_CPU * cpus * tasks + MEM_GB_PER_GPU * gpus,
    }


def resource(key: str, *, _root_: DictConfig):
    """The ``${slurm:KEY}`` resolver of ``conf/hydra/launcher/slurm.yaml``: ``job_resources`` of the config."""
    resources = job_resources(_root_)
    if key not in resources:
        raise ValueError(f"${{slurm:{key}}}: unknown key; the keys are {', '.join(resources)}")
    return resources[key]


def tasks_per_node() -> int | None:
    """Processes SLURM started on each node of this job step, or None outside ``srun``; ValueError when the nodes got
    different numbers (DDP needs the same on each)."""
    if "SLURM_STEP_ID" not in os.environ or "SLURM_NTASKS" not in os.environ or job_id() is None:
        return None
    given = os.environ.get("SLURM_NTASKS_PER_NODE") or os.environ.get("SLURM_TASKS_PER_NODE", "1")
    counts = {int(count) for count in re.findall(r"(\d+)(?:\(x\d+\))?", given)}
    if len(counts) != 1:
        raise ValueError(
            f"SLURM started {os.environ['SLURM_NTASKS']} tasks unevenly over the nodes (SLURM_TASKS_PER_NODE={given}); "
            "DDP needs the same number on each node: use srun --ntasks-per-node=N"
        )
    return counts.pop()


def slurm_ddp(cfg: DictConfig) -> str | None:
    """Inside ``srun`` with more than one task: set ``trainer.devices`` (tasks per node), ``trainer.num_nodes`` and,
    where it is ``auto``, ``trainer.strategy=ddp`` from SLURM's environment (SLURM started the processes, so its
    numbers are the run's); returns the line that says so, or None when there is nothing to set."""
    per_node = tasks_per_node()
    if per_node is None or int(os.environ["SLURM_NTASKS"]) <= 1:
        return None
    nodes = int(os.environ.get("SLURM_NNODES") or os.environ.get("SLURM_JOB_NUM_NODES") or 1)
    # Lightning reads the tasks per node from SLURM_NTASKS_PER_NODE, which only srun --ntasks-per-node sets.
    os.environ.setdefault("SLURM_NTASKS_PER_NODE", str(per_node))
    cfg.trainer.devices = per_node
    cfg.trainer.num_nodes = nodes
    if str(cfg.trainer.get("strategy", "auto")) == "auto":
        cfg.trainer.strategy = "ddp"
    return (
        f"[unetlab] SLURM started {os.environ['SLURM_NTASKS']} tasks on {nodes} node(s): trainer.devices={per_node} "
        f"trainer.num_nodes={nodes} trainer.strategy={cfg.trainer.strategy}"
    )


def job_threads() -> int | None:
    """The CPUs SLURM gave each task of this job: ``SLURM_CPUS_PER_TASK``, or where that is unset (``srun -n N``
    without ``-c``) the node's CPUs shared among its tasks; None outside SLURM."""
    if job_id() is None:
        return None
    value = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if value.isdigit():
        return int(value)
    on_node = os.environ.get("SLURM_CPUS_ON_NODE", "")
    try:
        tasks = tasks_per_node() or 1
    except ValueError:  # uneven tasks: slurm_ddp names the problem
        tasks = 1
    return max(1, int(on_node) // tasks) if on_node.isdigit() else None


def requeue() -> tuple[bool, str]:
    """``scontrol requeue <this job>``: SLURM stops the job and queues it again; (whether it took, what it said)."""
    found = job_id()
    if found is None:
        return False, "not in a SLURM job"
    try:
        done = subprocess.run(["scontrol", "requeue", found], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, str(err)
    return done.returncode == 0, (done.stdout + done.stderr).strip()
