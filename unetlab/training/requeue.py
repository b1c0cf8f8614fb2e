"""``RequeueOnSignal``: a SLURM job near its time limit asks to be requeued, and the requeued job resumes.

sbatch's ``--signal=USR1@90`` (or ``scancel --signal=USR1 <job>``) sends SIGUSR1 to the job's processes. Rank 0 then
runs ``scontrol requeue <job>`` (``unetlab.runs.slurm.requeue``): SLURM stops the job and queues it again, and the
requeued job runs the same command in the same run directory, which resumes from ``checkpoints/last.ckpt`` and says so.
That checkpoint is written at the end of every epoch, so the epoch in progress at the signal is trained again from its
start: every epoch is trained to its end exactly once, and the run ends as an uninterrupted one would (README,
"Resume"). A job requeued by SLURM itself (``scontrol requeue``, preemption with ``PreemptMode=REQUEUE``) resumes the
same way.

Lightning's own SLURM requeue (its ``SLURMEnvironment(auto_requeue=True)``) is turned off where this runs: it saves a
mid-epoch ``hpc_ckpt_N.ckpt`` and resumes from it, which trains part of an epoch twice.
"""

from __future__ import annotations

import signal

from lightning.pytorch import Callback, LightningModule, Trainer

from unetlab.runs.slurm import job_id, requeue


class RequeueOnSignal(Callback):
    """On ``signum`` (SIGUSR1) inside a SLURM job, rank 0 asks SLURM to requeue the job; outside SLURM, nothing."""

    def __init__(self, signum: int = signal.SIGUSR1):
        self.signum = signum
        self._trainer: Trainer | None = None
        self._previous = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if job_id() is None:
            return
        self._trainer = trainer
        self._previous = signal.signal(self.signum, self._handle)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._trainer is not None:
            signal.signal(self.signum, self._previous or signal.SIG_DFL)
            self._trainer = None

    def _handle(self, signum, frame) -> None:
        trainer = self._trainer
        if trainer is None or not trainer.is_global_zero:
            return
        done = trainer.current_epoch
        print(
            f"[unetlab] signal {signal.Signals(signum).name} in SLURM job {job_id()} (epoch {done} in progress): "
            f"requeueing; the requeued job resumes from checkpoints/last.ckpt ({done} epoch(s) done)",
            flush=True,
        )
        took, said = requeue()
        if not took:
            print(f"[unetlab] scontrol requeue {job_id()} failed: {said}; the job will end here", flush=True)
