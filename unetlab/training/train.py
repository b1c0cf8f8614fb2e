"""``train(cfg)``: build data, model and Lightning system from a Hydra config, fit, test, save metrics.json.

Re-running with the same ``paths.output_dir`` resumes from ``checkpoints/last.ckpt``; a run whose
``metrics.json`` exists is finished and is not trained again.

Under DDP (``trainer.devices``/``trainer.num_nodes`` > 1, ``trainer.strategy=ddp|ddp_spawn``) every rank starts from
the same ``seed_everything(seed)`` weights, and ``EpochShuffle`` (``unetlab.data.sampling``) permutes the training
split with ``(seed, epoch)`` and hands each rank a disjoint slice: ranks see different images, and a re-run (or a
resumed run) sees the same ones. Rank 0 alone writes checkpoints, metrics.json and results.csv. Validation during
training uses Lightning's sampler, which pads the val split with repeated images up to a multiple of the world size
(so val/* is exact when that split's size is a multiple of it); the final test runs on ``UnpaddedShards``, so test/*
counts every test image once. Training knows nothing of evaluation: ``unetlab-eval`` scores a trained run, and the main
job's grid composes the two (``unetlab.grid.job``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher, _SubprocessScriptLauncher
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from unetlab.atomic import write_json
from unetlab.conventions import check_depth, parse_skips
from unetlab.data.sampling import unpadded
from unetlab.runs.checkpoint import model_channels
from unetlab.runs.run_dir import DIE_WITH_PARENT, claim_config, die_with_parent, hold_run_dir
from unetlab.runs.slurm import job_id, job_threads, slurm_ddp
from unetlab.training.console import quiet_console
from unetlab.training.precision import resolve_precision
from unetlab.training.requeue import RequeueOnSignal
from unetlab.training.task import count_parameters


def check_config(cfg: DictConfig) -> None:
    """Errors that name the key and what is allowed, before any data is built or training starts."""
    # Unchecked, trainer.max_epochs=abc fails in Lightning's fit loop as a bare AssertionError, and a string size or
    # seed as "invalid literal for int()" or a comparison TypeError deep in the data module, naming no key.
    for key in ("seed", "threads", "trainer.max_epochs", "trainer.max_steps", "data.image_size", "data.batch_size"):
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{key}={value!r} is not allowed; use an integer")
    depth = check_depth(cfg.model.depth)
    parse_skips(cfg.model.skips, depth)
    size = cfg.data.get("image_size")
    factor = 2**depth
    if size is not None and size < factor:
        raise ValueError(
            f"data.image_size={size} is smaller than 2**model.depth = {factor} (model.depth={depth}): the deepest "
            f"level would be under one pixel; use data.image_size={factor} (or a multiple) or a lower model.depth"
        )
    if size is not None and int(size) % factor:
        raise ValueError(
            f"data.image_size={size} is not a multiple of 2**model.depth = {factor} (model.depth={depth}); "
            f"use e.g. data.image_size={max(factor, int(size) // factor * factor)}"
        )


def check_strategy(trainer: L.Trainer, loggers: list) -> None:
    """Multi-process set-ups that would fail late or silently, named before training starts."""
    launcher = trainer.strategy.launcher
    reruns_command = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and trainer.num_devices > 1
        and not trainer.strategy.cluster_environment.creates_processes_externally
    )
    if reruns_command and _in_sweep():
        raise ValueError(
            "trainer.strategy=ddp starts its other processes by re-running the command line, which inside a -m sweep "
            "re-runs the whole sweep (Lightning #11300); in a sweep use trainer.strategy=ddp_spawn, or "
            "hydra/launcher=slurm (SLURM starts the processes: one task per device, from trainer.devices)"
        )
    if isinstance(launcher, _MultiProcessingLauncher) and any(isinstance(lg, CSVLogger) for lg in loggers):
        raise ValueError(
            "logger=csv does not work with trainer.strategy=ddp_spawn (or ddp_fork, ddp_notebook): every new process "
            "gets the main process's CSV writer, which has not seen the columns the last one wrote, and the test then "
            "fails to append to metrics.csv (lightning 2.6); use trainer.strategy=ddp, or logger=wandb / logger=none"
        )


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def build_loggers(cfg: DictConfig) -> list:
    """The configured logger, or none (``logger=none``)."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return []
    logger = instantiate(logger_cfg)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return [logger]


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one model as configured; returns the final val/test metrics (also written to metrics.json).

    One process per run directory (``hold_run_dir``): a second one is refused at once, and so is a command whose
    config differs from the one the directory was started with (``claim_config``).
    """
    slurm_line = slurm_ddp(cfg)  # in srun -n N: devices and nodes from SLURM, before the config is checked and saved
    check_config(cfg)
    if slurm_line and rank_zero_only.rank == 0:
        print(slurm_line, flush=True)
    if job_id() is not None and not sys.stdout.isatty() and cfg.trainer.get("enable_progress_bar", True):
        cfg.trainer.enable_progress_bar = False  # a SLURM job's log file: a line per epoch (EpochSummary), not bars
    # Resolved before the config is saved: the run records the arithmetic it used (unetlab/training/precision.py).
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision, cfg.trainer.get("accelerator", "auto"))
    if os.environ.get(DIE_WITH_PARENT):  # a job of unetlab-ablate's grid ends with the grid
        die_with_parent()
    run_dir = Path(cfg.paths.output_dir)
    with hold_run_dir(run_dir):
        claim_config(cfg, run_dir)
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists() and "epochs" in json.loads(metrics_path.read_text()):  # written once, at the end
        print(f"[unetlab] {run_dir} is finished (metrics.json exists); not training again.")
        return json.loads(metrics_path.read_text())

    threads = cfg.get("threads") or job_threads()  # unset in a SLURM job: the CPUs SLURM gave it
    if threads:
        torch.set_num_threads(int(threads))
    quiet_console(shared=not cfg.trainer.get("enable_progress_bar", True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data, order_seed=int(cfg.seed))
    datamodule.setup("fit")
    net = instantiate(cfg.model, **model_channels(cfg, datamodule))
    task = instantiate(cfg.task, net=net, spacing=list(datamodule.spacing))  # distances in the data's unit

    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c and "_target_" in c]
    loggers = build_loggers(cfg)
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if job_id() is not None:  # SLURM: requeue on the time-limit signal, resume from last.ckpt (training/requeue.py)
        callbacks.append(RequeueOnSignal())
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None)
    check_strategy(trainer, loggers)

    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = None
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) if job_id() else 0
    if restarts and rank_zero_only.rank == 0:
        print(f"[unetlab] SLURM job {job_id()} was requeued; this is its start number {restarts + 1}", flush=True)
    if last.exists():
        if rank_zero_only.rank == 0:
            print(f"[unetlab] resuming {run_dir} from checkpoints/last.ckpt ({epochs_done(last)} epoch(s) done)",
                  flush=True)  # fmt: skip
        ckpt_path = str(last)

    # Our own checkpoints hold partial(optimizer) hyperparameters, which weights-only loading refuses.
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted; re-run the same command to resume")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if cfg.get("test", True):  # the grid's jobs set test=false: their evaluation scores the test split itself
        trainer.test(
            task,
            dataloaders=unpadded(datamodule.test_dataloader()),
            ckpt_path=best_checkpoint(trainer),
            weights_only=False,
            verbose=trainer.progress_bar_callback is not None,  # without bars (parallel jobs) no table either
        )
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    metrics["params"] = float(count_parameters(net))
    # ddp_spawn does not send the loop's progress back to the main process; the last checkpoint has it.
    metrics["epochs"] = float(max(trainer.current_epoch, epochs_done(last)))
    if trainer.is_global_zero:
        write_json(metrics_path, metrics)
    return metrics


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The path of the monitored (best-by-val/dice) checkpoint, or None when no callback monitors a metric."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and callback.best_model_path:
            return callback.best_model_path
    return None


def epochs_done(last: Path) -> int:
    """Epochs finished by the run whose last checkpoint is ``last`` (0 when there is none)."""
    if not last.exists():
        return 0
    return torch.load(last, map_location="cpu", weights_only=False, mmap=True)["epoch"] + 1
