"""``run_viz(ckpt, viz_cfg)``: why deep units cover large regions and lose location, as PNGs of one trained run.

Writes into ``<run_dir>/viz/`` (or ``viz.out_dir``):
- ``fields.png``: theoretical receptive field per feature key next to the effective ones (50% and 95% of the
  gradient mass) for the trained network and a randomly initialised one of the same architecture;
- ``erf_maps.png``: the effective receptive fields as heat maps (both networks, every key);
- ``top9_<key>.png``: for each chosen key, the nine input patches that excite each chosen channel most, each cropped
  to the unit's receptive field, ground-truth boundary on top;
- ``fields.json``: the numbers behind the plots.
The PNGs are logged to wandb when the run was trained with the wandb logger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from unetlab.conventions import skips_to_str
from unetlab.data.module import SPLITS
from unetlab.explain.erf import ERF, effective_receptive_fields, format_erf_table, plot_erf_maps, plot_fields
from unetlab.explain.topk import TopUnits, key_channels, save_grid, top_units
from unetlab.models.unet import UNet
from unetlab.training.checkpoint import LoadedRun, load_run

LABELS = ("trained", "random init")


@dataclass
class VizOptions:
    """The ``viz.*`` config keys.

    keys: feature keys for the top-k grids (None: every encoder key, enc0..encD); channels: the first N channels of
    each key, or a list of channel indices; top_k: patches per channel; split: data split streamed for the top-k
    patches and the ERF images; erf_images: images averaged for the ERF; batch_size: images per forward pass;
    seed: seeds the random-init network; device: cpu | cuda; progress: progress bars; out_dir: None =
    ``<run_dir>/viz``.
    """

    keys: list[str] | None = None
    channels: int | list[int] = 8
    top_k: int = 9
    split: str = "test"
    erf_images: int = 32
    batch_size: int = 16
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    out_dir: str | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"viz.split={self.split!r}; allowed: {', '.join(SPLITS)}")
        for name in ("top_k", "erf_images", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"viz.{name}={getattr(self, name)} must be >= 1")
        if isinstance(self.keys, str):
            self.keys = [self.keys]


def choose_channels(net: UNet, keys: Sequence[str], channels: int | Sequence[int]) -> dict[str, list[int]]:
    """Channel indices per key: ``channels`` = N means channels 0..N-1; a list is taken as is. Clear errors for
    unknown keys and for more channels than a key has."""
    unknown = [key for key in keys if key not in net.feature_keys]
    if unknown:
        raise ValueError(
            f"viz.keys names {', '.join(map(repr, unknown))}, but this depth-{net.depth} U-Net has the feature keys "
            f"{', '.join(net.feature_keys)}"
        )
    chosen = {}
    for key in keys:
        available = key_channels(net, key)
        if isinstance(channels, int):
            if not 1 <= channels <= available:
                raise ValueError(
                    f"viz.channels={channels}, but {key} has only {available} channels; "
                    f"use viz.channels={available} or fewer, or a list of indices in 0..{available - 1}"
                )
            chosen[key] = list(range(channels))
        else:
            bad = [c for c in channels if not 0 <= int(c) < available]
            if bad or not channels:
                raise ValueError(f"viz.channels={list(channels)}: {key} has channels 0..{available - 1} (bad: {bad})")
            chosen[key] = [int(c) for c in channels]
    return chosen


def random_init_like(net: UNet, seed: int) -> UNet:
    """A freshly initialised U-Net of the same architecture (BatchNorm running stats at their defaults)."""
    torch.manual_seed(seed)
    return UNet(
        in_channels=net.in_channels,
        num_classes=net.num_classes,
        depth=net.depth,
        base_channels=net.widths[0],
        skips=list(net.skip_levels),
    )


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _summary(erfs_by_label: dict[str, dict[str, ERF]], tops: dict[str, TopUnits]) -> dict:
    first = erfs_by_label[LABELS[0]]
    fields = {
        key: {
            "size": erf.theoretical.size,
            "jump": erf.theoretical.jump,
            "start": erf.theoretical.start,
            **{
                f"erf_{label.replace(' ', '_')}": {
                    "radius50": erfs_by_label[label][key].radius50,
                    "radius95": erfs_by_label[label][key].radius95,
                    "unit": list(erfs_by_label[label][key].unit),
                    "centre": list(erfs_by_label[label][key].centre),
                    "images": erfs_by_label[label][key].num_images,
                }
                for label in erfs_by_label
            },
        }
        for key, erf in first.items()
    }
    top = {
        key: {
            "channels": result.channels,
            "values": result.values.tolist(),
            "image_index": result.image_index.tolist(),
            "unit_yx": result.unit.tolist(),
        }
        for key, result in tops.items()
    }
    return {"fields": fields, "top_units": top}


def log_to_wandb(run: LoadedRun, paths: dict[str, Path], options: VizOptions) -> None:
    """Log the PNGs as wandb images when the run was trained with the wandb logger (same project, job_type viz)."""
    logger = run.cfg.get("logger") or {}
    if not str(logger.get("_target_", "")).endswith("WandbLogger"):
        return
    import wandb

    wandb_run = wandb.init(
        project=logger.get("project", "unetlab"),
        group=logger.get("group"),
        dir=str(run.run_dir),
        mode=logger.get("mode", "offline"),
        job_type="viz",
        name=f"viz/{run.run_dir.name}",
        config={"run": OmegaConf.to_container(run.cfg, resolve=False), "viz": vars(options)},
        reinit="finish_previous",
    )
    try:
        wandb_run.log({f"viz/{name}": wandb.Image(str(path), caption=name) for name, path in paths.items()})
    finally:
        wandb_run.finish()


def run_viz(ckpt: str | Path, viz_cfg: DictConfig | dict, overrides: Sequence[str] = ()) -> dict[str, Path]:
    """Load the run, compute fields, ERFs and top-k patches, write the PNGs and ``fields.json``; returns the
    written files by name."""
    if isinstance(viz_cfg, DictConfig):
        viz_cfg = OmegaConf.to_container(viz_cfg, resolve=True)
    options = VizOptions(**viz_cfg)
    run = load_run(ckpt, overrides)
    # channels_last: oneDNN's convolutions run ~1.5x faster on CPU (scripts/bench_topk.py).
    net = run.net.to(options.device, memory_format=torch.channels_last)
    keys = options.keys or [f"enc{level}" for level in range(net.depth + 1)]
    channels = options.channels if isinstance(options.channels, int) else list(options.channels)
    chosen = choose_channels(net, keys, channels)
    dataset = run.datamodule.datasets[options.split]
    out_dir = Path(options.out_dir) if options.out_dir else run.run_dir / "viz"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"depth {net.depth}, skips {skips_to_str(net.skip_levels)}"

    num_erf = min(options.erf_images, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(num_erf)])
    erfs = {
        LABELS[0]: effective_receptive_fields(net, images, batch_size=options.batch_size),
        LABELS[1]: effective_receptive_fields(
            random_init_like(net, options.seed).to(options.device, memory_format=torch.channels_last),
            images,
            batch_size=options.batch_size,
        ),
    }
    image_size = tuple(images.shape[-2:])
    paths = {
        "fields": plot_fields(
            erfs,
            image_size,
            out_dir / "fields.png",
            f"Receptive field per feature key ({name}; ERF over {num_erf} "
            f"{options.split} images of {image_size[0]}x{image_size[1]} px)",
        ),
        "erf_maps": plot_erf_maps(
            erfs,
            out_dir / "erf_maps.png",
            f"Effective receptive fields of the centre unit ({name}; mean |gradient| over {num_erf} images)\n"
            "dashed: theoretical field; solid, dotted: squares holding 95%, 50% of the gradient mass",
        ),
    }
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False)
    tops = top_units(net, loader, chosen, k=options.top_k, progress=options.progress)
    for key, result in tops.items():
        paths[f"top{options.top_k}_{key}"] = save_grid(net, dataset, result, out_dir / f"top{options.top_k}_{key}.png")
    json_path = out_dir / "fields.json"
    _write_json(json_path, _summary(erfs, tops))
    print(f"Receptive fields ({name}): theoretical size and jump (px); effective radii (px) holding 50% / 95%")
    print("of the gradient mass around the centre unit, trained and at random init:")
    print(format_erf_table(erfs))
    print(f"[unetlab] wrote {len(paths)} PNGs and {json_path.name} to {out_dir}:")
    for path in paths.values():
        print(f"  {path}")
    log_to_wandb(run, paths, options)
    return {**paths, "json": json_path}
