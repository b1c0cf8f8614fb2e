"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher, with three things a sweep on a real cluster needs.

1. **A request SLURM can never run fails at once.** sbatch refuses some requests itself (a GPU on a partition without
   any, more memory than a node has): the sweep stops with sbatch's words. Others it accepts and leaves pending for
   ever (more CPUs than a node has, a time limit over the partition's): while the jobs wait, their pending reason is
   read from ``squeue``, and a reason that cannot change (``NEVER_REASONS``) cancels the sweep's jobs and stops it,
   naming the job, the reason and the keys to change.
2. **A failed job is named**: its number in the sweep, its overrides and the paths of its log files.
3. **Quiet on clusters without accounting**: submitit polls ``sacct`` and warns at every poll where it is disabled;
   this launcher follows its jobs with ``squeue`` and the result files instead.

Everything else is submitit's and Hydra's: the sbatch script, job arrays (``array_parallelism`` at once), the
time-limit signal and submitit's own requeue on it (``max_num_timeout``), results coming back to the sweep. The
resources per job come from the job's config (``conf/hydra/launcher/slurm.yaml``, ``unetlab.runs.slurm.job_resources``).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# Pending reasons that no waiting resolves: the request exceeds what the partition or its nodes allow, or names
# something the cluster does not have (squeue --help-format %r; slurm.schedmd.com/job_reason_codes.html).
NEVER_REASONS = {
    "PartitionConfig": "the partition cannot give what the job asks for (CPUs, nodes, memory or GPUs per node)",
    "PartitionTimeLimit": "the time limit asked for (hydra.launcher.timeout_min) is over the partition's",
    "PartitionNodeLimit": "the nodes asked for are more or fewer than the partition allows",
    "BadConstraints": "no node has the features or resources asked for",
    "InvalidAccount": "the account (hydra.launcher.account) is not valid",
    "InvalidQOS": "the QOS (hydra.launcher.qos) is not valid",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
}
POLL_S = 3.0  # seconds between two looks at squeue
GONE_POLLS = 3  # a job missing from squeue this many looks in a row, with no result file, has ended without one


class SlurmSweepError(ValueError):
    """SLURM refused or cannot run the sweep's jobs, or one of them failed (a one-line error for the commands)."""


class _NoSacctWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "sacct" not in record.getMessage()


class SlurmLauncher(SubmititSlurmLauncher):
    """Hydra's submitit ``SlurmLauncher``; ``launch`` submits as it does, then follows the jobs (module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        # In the job, on the cluster: the config's resolvers before Hydra loads the job's config.
        from unetlab.runs.resolvers import register_resolvers

        register_resolvers()
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and job_overrides
        for name in ("submitit", "hydra_plugins.hydra_submitit_launcher.submitit_launcher"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NoSacctWarnings) for f in logger.filters):  # once, however many sweeps
                logger.addFilter(_NoSacctWarnings())
        self._fit_time_limit()
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            slurm_max_num_timeout=self.params.get("max_num_timeout", 0),
        )
        common = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{
            key if key in common else f"{self._EXECUTOR}_{key}": value
            for key, value in self.params.items() if key not in ("submitit_folder", "max_num_timeout")
        })  # fmt: skip
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params = []
        for index, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{index} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", index, f"job_id_for_{index}", Singleton.get_state()))
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except (submitit.core.utils.FailedSubmissionError, submitit.core.utils.FailedJobError) as err:  # sbatch said no
            said = " ".join(line.strip() for line in str(err).splitlines() if "error" in line.lower())
            raise SlurmSweepError(f"sbatch refused the sweep's jobs: {said or err}; {self._resources()}") from None
        log.info(f"SLURM jobs {', '.join(job.job_id for job in jobs)} "
                 f"(follow them: squeue -j {jobs[0].job_id.split('_')[0]}); "
                 f"logs in {Path(str(jobs[0].paths.folder)).parent}")  # fmt: skip
        self._follow(jobs, job_overrides)
        returns, failed = [], []
        for job, overrides in zip(jobs, job_overrides, strict=True):
            if not job.paths.result_pickle.exists():  # exited, cancelled, killed: submitit would wait for ever
                failed.append(f"job {job.job_id} ({' '.join(filter_overrides(overrides))}) ended without a result: "
                              f"{_last_error(Path(job.paths.stderr))}; log: {job.paths.stderr}")  # fmt: skip
                continue
            try:
                returns.append(job.results()[0])
            except Exception as err:  # noqa: BLE001 -- submitit re-raises the job's own error, of any type
                last = [line for line in str(err).splitlines() if line.strip()][-1:] or [type(err).__name__]
                failed.append(f"job {job.job_id} ({' '.join(filter_overrides(overrides))}): {last[0].strip()}; "
                              f"log: {job.paths.stderr}")  # fmt: skip
        if failed:
            raise SlurmSweepError(f"{len(failed)} of {len(jobs)} SLURM jobs failed: " + " | ".join(failed))
        return returns

    def _fit_time_limit(self) -> None:
        """Lower the default ``timeout_min`` to the partition's time limit where that is shorter: a default should not
        make every job wait for ever (a ``timeout_min`` given on the command line is left to SLURM to judge)."""
        given = [str(o) for o in self.config.hydra.overrides.get("hydra", [])]
        if any(o.lstrip("+~").startswith("hydra.launcher.timeout_min=") for o in given):
            return
        limit = partition_time_limit(self.params.get("partition"))
        if limit is not None and limit < int(self.params["timeout_min"]):
            log.info(f"timeout_min={self.params['timeout_min']} is over the partition's time limit: asking for {limit}")
            self.params["timeout_min"] = limit

    def _resources(self) -> str:
        keys = ("partition", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "timeout_min")
        asked = ", ".join(f"{key}={self.params.get(key)}" for key in keys)
        return f"each job asked for {asked} (change them with hydra.launcher.<key>=...)"

    def _follow(self, jobs: list, job_overrides: Sequence[Sequence[str]]) -> None:
        """Wait until every job has its result file or has left the queue without one; cancel all and raise
        ``SlurmSweepError`` when one waits for a reason that cannot change."""
        missing = {job.job_id: 0 for job in jobs}  # looks in a row that found the job gone from squeue
        while True:
            waiting = [job for job in jobs if not job.paths.result_pickle.exists()]
            if not waiting:
                return
            queued = _squeue([job.job_id for job in waiting])
            for job in waiting:
                state, reason = queued.get(job.job_id, (None, None))
                if state == "PENDING" and reason in NEVER_REASONS:
                    subprocess.run(["scancel", *{j.job_id.split("_")[0] for j in jobs}], capture_output=True)
                    index = jobs.index(job)
                    raise SlurmSweepError(
                        f"SLURM cannot run job {job.job_id} ({' '.join(filter_overrides(job_overrides[index]))}): it "
                        f"waits for {reason}: {NEVER_REASONS[reason]}; cancelled the sweep's jobs; {self._resources()}"
                    )
                missing[job.job_id] = 0 if state is not None else missing[job.job_id] + 1
            if all(missing[job.job_id] >= GONE_POLLS for job in waiting):
                return  # ended without a result file: job.results() below names them
            time.sleep(POLL_S)


def partition_time_limit(partition: str | None) -> int | None:
    """The time limit in minutes of ``partition`` (None: the default one) as ``sinfo`` gives it; None when it has
    none (``infinite``) or SLURM cannot say."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%P|%l"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in done.stdout.splitlines():
        name, _, limit = line.partition("|")
        if (partition is None and name.endswith("*")) or name.rstrip("*") == partition:
            return parse_minutes(limit.strip())
    return None


def parse_minutes(limit: str) -> int | None:
    """SLURM's time format in whole minutes (seconds dropped): ``minutes``, ``minutes:seconds``,
    ``hours:minutes:seconds``, ``days-hours``, ``days-hours:minutes``, ``days-hours:minutes:seconds``; None for
    ``infinite`` and anything else."""
    days, _, rest = limit.rpartition("-") if "-" in limit else ("0", "", limit)
    parts = rest.split(":")
    if not (days.isdigit() and 1 <= len(parts) <= 3 and all(part.isdigit() for part in parts)):
        return None
    values = [int(part) for part in parts]
    if "-" in limit:  # days-hours[:minutes[:seconds]]
        hours, minutes = values[0], values[1] if len(values) > 1 else 0
    else:  # minutes | minutes:seconds | hours:minutes:seconds
        hours, minutes = (values[0], values[1]) if len(values) == 3 else (0, values[0])
    return int(days) * 1440 + hours * 60 + minutes


def _last_error(log_file: Path) -> str:
    """The job's last error line in its log (a command's ``error:`` line before SLURM's own), or what is known."""
    try:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log (cancelled before it started?)"
    own = [line for line in lines if "error" in line.lower() and not line.startswith(("srun:", "slurmstepd:"))]
    slurm = [line for line in lines if line.startswith(("srun:", "slurmstepd:"))]
    return (own or slurm or ["cancelled or killed"])[-1]


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of the jobs still in SLURM's queue (array tasks as ``<job>_<task>``)."""
    mains = sorted({job_id.split("_")[0] for job_id in job_ids})
    try:
        done = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(mains)], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return {job_id: ("UNKNOWN", "") for job_id in job_ids}  # cannot tell: keep waiting
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        return {job_id: ("UNKNOWN", "") for job_id in job_ids}
    found = {}
    for line in done.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        found[job_id.strip()] = (state.strip(), reason.strip())
    return found
