"""A trained run loaded back from its checkpoint (``load_run``: its saved config, its data module and its network).
Training writes the checkpoints (``unetlab.training.checkpoint``).

A checkpoint lives at ``<run_dir>/checkpoints/*.ckpt`` beside ``<run_dir>/.hydra/config.yaml``;
``unetlab-eval`` and ``unetlab-viz`` start from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unetlab.conventions import parse_skips
from unetlab.data.module import SegmentationDataModule
from unetlab.models.protocol import UNetLike


@dataclass
class LoadedRun:
    """A trained run: ``cfg`` (saved config + overrides), ``net`` (eval mode), ``datamodule`` (set up)."""

    cfg: DictConfig
    net: UNetLike
    datamodule: SegmentationDataModule
    run_dir: Path


# The first conv's and the head's weights of our U-Net: their shapes give its input channels and classes.
OUR_UNET_KEYS = ("encoder.0.layers.0.weight", "head.weight")


def model_channels(cfg: DictConfig, datamodule: SegmentationDataModule) -> dict[str, int]:
    """``in_channels``, ``num_classes`` and ``spatial_dims`` of the model: ``model.*`` where set, else the data's
    (``spatial_dims`` always follows the data: 2 for images, 3 for volumes); ValueError when ``model.num_classes``
    is smaller than the data's classes or ``model.spatial_dims`` is not the data's."""
    num_classes = cfg.model.get("num_classes") or datamodule.num_classes
    if num_classes < datamodule.num_classes:
        raise ValueError(f"model.num_classes={num_classes} is smaller than data.num_classes={datamodule.num_classes}")
    dims = datamodule.spatial_dims
    asked = cfg.model.get("spatial_dims")
    if asked is not None and asked != dims:
        kind = {2: "images (2D)", 3: "volumes (3D)"}
        raise ValueError(
            f"model.spatial_dims={asked} but the data are {kind.get(dims, dims)}: the model's spatial_dims follows "
            f"the data; leave model.spatial_dims unset"
        )
    return {
        "in_channels": cfg.model.get("in_channels") or datamodule.in_channels,
        "num_classes": num_classes,
        "spatial_dims": dims,
    }


def run_dir_of(ckpt_path: Path) -> Path:
    """``<run_dir>/checkpoints/x.ckpt`` -> ``<run_dir>``."""
    return ckpt_path.resolve().parent.parent


def load_config(ckpt_path: str | Path, overrides: DictConfig | dict | None = None) -> DictConfig:
    """The run's saved ``.hydra/config.yaml`` merged with ``overrides``: run keys as a config, e.g.
    ``{"data": {"root": "/other/test"}}`` (what ``unetlab-eval data.root=...`` composes).

    Overrides of ``model.*`` must agree with the checkpoint: the weights fix the architecture.
    """
    ckpt_path = Path(ckpt_path)
    if ckpt_path.is_dir():
        raise ValueError(f"checkpoint {ckpt_path} is a folder; give a file, e.g. {ckpt_path}/checkpoints/last.ckpt")
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_path} does not exist")
    config_file = run_dir_of(ckpt_path) / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: a checkpoint must sit in <run_dir>/checkpoints/")
    cfg = OmegaConf.load(config_file)
    cfg.paths.output_dir = str(run_dir_of(ckpt_path))
    overrides = OmegaConf.create(overrides or {})
    for key, wanted in (overrides.get("model") or {}).items():
        saved = cfg.model.get(key)
        if not same_model_value(key, wanted, saved, depth=int(cfg.model.depth)):
            raise ValueError(
                f"model.{key}={wanted} does not match the checkpoint {ckpt_path} (trained with model.{key}={saved}); "
                "model.* keys are fixed by the weights"
            )
    return OmegaConf.merge(cfg, overrides)


def same_model_value(key: str, wanted, saved, depth: int) -> bool:
    """Whether ``model.<key>=wanted`` describes the saved value: skip sets as the levels they keep at the saved
    ``depth`` (``[0, 1, 2]`` is ``all`` at depth 3), other keys by equal values (``4`` is ``4.0``)."""
    if key != "skips":
        return wanted == saved
    try:
        return parse_skips(wanted, depth) == parse_skips(saved, depth)
    except ValueError:  # levels that the saved depth does not have: not this checkpoint's skip set
        return False


def load_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The network's weights (``net.*`` of the Lightning checkpoint, prefix removed)."""
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    # Any exception: torch.load of a truncated or foreign file raises nearly any type (fuzzing found RuntimeError,
    # OSError "Invalid argument", EOFError, UnpicklingError, ValueError, TypeError, AttributeError, OverflowError,
    # MemoryError), and the file is known to exist, so each one means "not a checkpoint".
    except Exception as err:
        detail = str(err).split(". ")[0].splitlines()[0] if str(err) else ""  # torch's first sentence, one line
        raise ValueError(
            f"checkpoint {ckpt_path} is unreadable or corrupt (truncated, or not written by unetlab-train): "
            f"{type(err).__name__}{': ' + detail if detail else ''}"
        ) from err
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {ckpt_path} has no state_dict: is it a Lightning checkpoint from unetlab-train?")
    weights = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}
    if not weights:
        raise ValueError(f"checkpoint {ckpt_path} holds no network weights (net.*): is it from unetlab-train?")
    return weights


def load_run(
    ckpt_path: str | Path, overrides: DictConfig | dict | None = None, cfg: DictConfig | None = None
) -> LoadedRun:
    """Config, set-up data module and network (weights loaded, eval mode) of a trained run.

    ``cfg``: the run's config when the caller has it already (e.g. ``train`` evaluating its own run);
    default: read from ``<run_dir>/.hydra/config.yaml`` and merged with ``overrides`` (``load_config``).
    """
    ckpt_path = Path(ckpt_path)
    cfg = load_config(ckpt_path, overrides) if cfg is None else cfg
    state = load_state_dict(ckpt_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    if all(key in state for key in OUR_UNET_KEYS):
        # Our U-Net's weights fix the channels: a data root given at eval time must not change them.
        first = state[OUR_UNET_KEYS[0]]  # (out, in, k, k) or (out, in, k, k, k): its rank gives the spatial dims
        channels = {
            "in_channels": first.shape[1],
            "num_classes": state[OUR_UNET_KEYS[1]].shape[0],
            "spatial_dims": first.ndim - 2,
        }
    else:  # another model (an adapter): the channels as the training chose them
        channels = model_channels(cfg, datamodule)
    net = instantiate(cfg.model, **channels)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of the wrong shape: the saved config and the weights disagree
        raise ValueError(
            f"checkpoint {ckpt_path} does not fit the configured model ({str(err).splitlines()[-1].strip()})"
        ) from err
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {ckpt_path} does not fit the configured model "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )
    return LoadedRun(cfg=cfg, net=net.eval(), datamodule=datamodule, run_dir=run_dir_of(ckpt_path))
