"""One job of the main job's grid: train a model (``unetlab-train``'s ``train``), then evaluate its best checkpoint
(``unetlab-eval``'s ``run_eval``) with the grid's ``eval.*`` keys. The two commands know nothing of each other; this
is where "train, then evaluate" is composed.

``unetlab-ablate`` runs it as Hydra sweeps over the training config (``python -m unetlab.cli.grid_job -m ...``, its
thin entry point); it reads the training keys as ``unetlab-train`` does, plus ``eval`` (null, or the ``eval.*`` keys:
``EvalOptions``).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from unetlab.evaluation.options import EvalOptions


def eval_options(cfg: DictConfig) -> EvalOptions | None:
    """The job's ``eval.*`` keys as ``EvalOptions`` (the rest at their defaults; types and values checked), or None
    when ``eval`` is null. Jobs trained side by side (no progress bars) evaluate without bars too."""
    if not cfg.get("eval"):
        return None
    options = OmegaConf.to_object(OmegaConf.merge(EvalOptions, OmegaConf.to_container(cfg.eval, resolve=True)))
    options.progress = options.progress and cfg.trainer.get("enable_progress_bar", True)
    if options.shifts and not cfg.data._target_.endswith(".ShapesDataModule"):
        raise ValueError(f"eval.shifts={options.shifts}: test-time shifts are drawn by the shapes data set "
                         f"(data=shapes), not by {cfg.data._target_.rsplit('.', 1)[-1]}")  # fmt: skip
    return options


def best_or_last(run_dir: Path) -> Path:
    """The run's best-by-val checkpoint, or ``last.ckpt`` when no callback kept a best one."""
    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    return best[-1] if best else run_dir / "checkpoints" / "last.ckpt"


def train_then_evaluate(cfg: DictConfig) -> None:
    """Train (a finished run is not trained again), then evaluate once, on rank 0: a run whose ``results.csv`` exists
    is evaluated already. The evaluation logs to the training's wandb run, still open in this process."""
    from lightning.pytorch.utilities import rank_zero_only

    from unetlab.evaluation.evaluate import run_eval
    from unetlab.runs.wandb_job import finishing_wandb
    from unetlab.training.train import train

    options = eval_options(cfg)  # checked before the training, not after it
    run_dir = Path(cfg.paths.output_dir)
    with finishing_wandb(cfg):
        train(cfg)
        if options is not None and rank_zero_only.rank == 0 and not (run_dir / "results.csv").exists():
            run_eval(best_or_last(run_dir), options, cfg=cfg)
