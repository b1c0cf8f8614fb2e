"""``train(cfg)``: build data, model and Lightning system from a Hydra config, fit, test, save metrics.json.

Re-running with the same ``paths.output_dir`` resumes from ``checkpoints/last.ckpt``; a run whose
``metrics.json`` exists is finished and is not trained again.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unetlab.atomic import write_json
from unetlab.models.unet import check_depth, parse_skips
from unetlab.system import count_parameters


def check_config(cfg: DictConfig) -> None:
    """Errors that name the key and what is allowed, before any data is built or training starts."""
    depth = check_depth(cfg.model.depth)
    parse_skips(cfg.model.skips, depth)
    size = cfg.data.get("image_size")
    factor = 2**depth
    if size is not None and int(size) % factor:
        raise ValueError(
            f"data.image_size={size} is not a multiple of 2**model.depth = {factor} (model.depth={depth}); "
            f"use e.g. data.image_size={max(factor, int(size) // factor * factor)}"
        )


def build_loggers(cfg: DictConfig) -> list:
    """The configured logger, or none (``logger=none``)."""
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return []
    logger = instantiate(logger_cfg)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return [logger]


def finish_wandb() -> None:
    """End the process-wide wandb run so the next job of a sweep starts its own."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one model as configured; returns the final val/test metrics (also written to metrics.json)."""
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists() and "test/dice" in json.loads(metrics_path.read_text()):
        print(f"[unetlab] {run_dir} is finished (metrics.json exists); not training again.")
        evaluate_if_asked(cfg, run_dir)
        return json.loads(metrics_path.read_text())

    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    num_classes = cfg.model.num_classes or datamodule.num_classes
    if num_classes < datamodule.num_classes:
        raise ValueError(f"model.num_classes={num_classes} is smaller than data.num_classes={datamodule.num_classes}")
    net = instantiate(cfg.model, in_channels=cfg.model.in_channels or datamodule.in_channels, num_classes=num_classes)
    task = instantiate(cfg.task, net=net)

    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c and "_target_" in c]
    loggers = build_loggers(cfg)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = None
    if last.exists():
        epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
        print(f"[unetlab] resuming {run_dir} from checkpoints/last.ckpt ({epoch + 1} epoch(s) done)")
        ckpt_path = str(last)

    try:
        # Our own checkpoints hold partial(optimizer) hyperparameters, which weights-only loading refuses.
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
        if trainer.interrupted:
            raise KeyboardInterrupt("training was interrupted; re-run the same command to resume")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        has_best = any(getattr(c, "best_model_path", "") for c in trainer.checkpoint_callbacks)
        trainer.test(task, datamodule=datamodule, ckpt_path="best" if has_best else None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    finally:
        if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
            finish_wandb()
    metrics["params"] = float(count_parameters(net))
    metrics["epochs"] = float(trainer.current_epoch)
    if trainer.is_global_zero:
        write_json(metrics_path, metrics)
        evaluate_if_asked(cfg, run_dir)
    return metrics


def evaluate_if_asked(cfg: DictConfig, run_dir: Path) -> None:
    """With ``eval`` set in the config (as ``unetlab-ablate`` does), evaluate the best checkpoint once."""
    if not cfg.get("eval") or (run_dir / "results.csv").exists():
        return
    from unetlab.evaluate import run_eval

    best = sorted((run_dir / "checkpoints").glob("best-*.ckpt"))
    run_eval(best[-1] if best else run_dir / "checkpoints" / "last.ckpt", cfg.eval, cfg=cfg)
