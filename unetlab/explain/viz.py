"""``run_viz(ckpt, viz_cfg)``: why deep units cover large regions and lose location, as PNGs of one trained run.

Writes into ``<run_dir>/viz/`` (or ``viz.out_dir``):
- ``fields.png``: theoretical receptive field per feature key next to the effective ones (50% and 95% of the
  gradient mass) for the trained network and a randomly initialised one of the same architecture;
- ``erf_maps.png``: the effective receptive fields as heat maps (both networks, every key);
- ``top9_<key>.png``: for each chosen key, the nine input patches that excite each chosen channel most, each cropped
  to the unit's receptive field, ground-truth boundary on top;
- ``fields.json``: the numbers behind the plots;
- ``explore.json``: the data of the explorer's fields and units views (``unetlab/explain/explore.py``).
The PNGs are logged to wandb when the run was trained with the wandb logger.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from unetlab.atomic import replace_atomically, write_json
from unetlab.conventions import skips_to_str
from unetlab.erf import ERF, effective_receptive_fields, format_erf_table
from unetlab.explain.explore import field_data, unit_data
from unetlab.explain.options import VizOptions
from unetlab.explain.pictures import plot_erf_maps, plot_fields, save_grid
from unetlab.explain.topk import TopUnits, key_channels, top_units
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.runs.checkpoint import LoadedRun, load_run
from unetlab.runs.phases import Phases
from unetlab.runs.wandb_job import wandb_job

LABELS = ("trained", "random init")


def choose_channels(
    net: UNetLike, keys: Sequence[str], channels: int | Sequence[int], clip: bool = False
) -> dict[str, list[int]]:
    """Channel indices per key: ``channels`` = N means channels 0..N-1 (with ``clip``, at most the key's channels:
    for the default keys, whose ``enc0`` is the image itself in a library U-Net without a full-resolution level); a
    list is taken as is. Clear errors for unknown keys and for more channels than a key has."""
    unknown = [key for key in keys if key not in protocol.feature_keys(net)]
    if unknown:
        raise ValueError(
            f"viz.keys names {', '.join(map(repr, unknown))}, but this depth-{net.depth} U-Net has the feature keys "
            f"{', '.join(protocol.feature_keys(net))}"
        )
    chosen = {}
    for key in keys:
        available = key_channels(net, key)
        if isinstance(channels, int):
            if clip and channels >= 1:
                chosen[key] = list(range(min(channels, available)))
                continue
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
    config = {"run": OmegaConf.to_container(run.cfg, resolve=False), "viz": vars(options)}
    with wandb_job(run.cfg, run.run_dir, "viz", config) as wandb_run:
        if wandb_run is None:
            return
        import wandb

        wandb_run.log({f"viz/{name}": wandb.Image(str(path), caption=name) for name, path in paths.items()})


def run_viz(
    ckpt: str | Path, viz_cfg: VizOptions | DictConfig | dict, overrides: DictConfig | dict | None = None
) -> dict[str, Path]:
    """Load the run, compute fields, ERFs and top-k patches, write the PNGs and ``fields.json``; returns the
    written files by name.

    ``viz_cfg``: ``viz.*`` keys, any left out at their ``VizOptions`` default; ``overrides``: run keys (``data``,
    ``model``, ...) merged into the run's saved config (``load_config``).
    """
    options = OmegaConf.to_object(OmegaConf.merge(VizOptions, viz_cfg))  # types checked, then __post_init__
    run = load_run(ckpt, overrides)
    # channels_last: oneDNN's convolutions run ~1.5x faster on CPU (scripts/bench_topk.py).
    layout = protocol.channels_last(run.net.spatial_dims)
    net = run.net.to(options.device, memory_format=layout)
    keys = options.keys or [f"enc{level}" for level in range(net.depth + 1)]
    channels = options.channels if isinstance(options.channels, int) else list(options.channels)
    chosen = choose_channels(net, keys, channels, clip=not options.keys)
    dataset = run.datamodule.datasets[options.split]
    out_dir = Path(options.out_dir) if options.out_dir else run.run_dir / "viz"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"depth {net.depth}, skips {skips_to_str(net.skip_levels)}"
    phase = Phases(run.run_dir.name, "viz")  # the ERFs and the drawing have no bar of their own

    num_erf = min(options.erf_images, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(num_erf)])
    erfs = {
        LABELS[0]: effective_receptive_fields(net, images, batch_size=options.batch_size),
        LABELS[1]: effective_receptive_fields(
            protocol.random_init_like(net, options.seed).to(options.device, memory_format=layout),
            images,
            batch_size=options.batch_size,
        ),
    }
    phase.done(f"effective receptive fields of {len(erfs[LABELS[0]])} keys, trained and at random init")
    image_size = tuple(images.shape[2:])  # (H, W), or (D, H, W) for volumes
    shown = "x".join(map(str, image_size)) + (" px" if len(image_size) == 2 else " voxels")
    paths = {
        "fields": plot_fields(
            erfs,
            image_size,
            out_dir / "fields.png",
            f"Receptive field per feature key ({name}; ERF over {num_erf} {options.split} images of {shown})",
        ),
        "erf_maps": plot_erf_maps(
            erfs,
            out_dir / "erf_maps.png",
            f"Effective receptive fields of the centre unit ({name}; mean |gradient| over {num_erf} images)\n"
            "dashed: theoretical field; solid, dotted: squares holding 95%, 50% of the gradient mass",
        ),
    }
    phase.done("fields.png and erf_maps.png drawn")
    loader = DataLoader(dataset, batch_size=options.batch_size, shuffle=False)
    tops = top_units(net, loader, chosen, k=options.top_k, progress=options.progress)
    phase.done(f"top-{options.top_k} units of {len(tops)} keys over the {options.split} split")
    for key, result in tops.items():
        paths[f"top{options.top_k}_{key}"] = save_grid(net, dataset, result, out_dir / f"top{options.top_k}_{key}.png")
    phase.done(f"{len(tops)} top-{options.top_k} grids drawn")
    json_path = out_dir / "fields.json"
    write_json(json_path, _summary(erfs, tops))
    explore_path = out_dir / "explore.json"  # the explorer's fields and units views (unetlab/explain/explore.py)
    explore = {
        "run": run.run_dir.name,
        "model": name,
        # the explorer's field paths and ERF grids are drawn on images; volumes have none there yet
        "fields": field_data(net, images[: options.explore_images]) if net.spatial_dims == 2 else {},
        "units": unit_data(net, dataset, tops),
    }
    replace_atomically(explore_path, lambda tmp: tmp.write_text(json.dumps(explore, separators=(",", ":"))))
    phase.done("the explorer's fields and units data")
    print(f"Receptive fields ({name}): theoretical size and jump (px); effective radii (px) holding 50% / 95%")
    print("of the gradient mass around the centre unit, trained and at random init:")
    print(format_erf_table(erfs))
    print(f"[unetlab] wrote {len(paths)} PNGs and {json_path.name} to {out_dir}:")
    for path in paths.values():
        print(f"  {path}")
    log_to_wandb(run, paths, options)
    return {**paths, "json": json_path, "explore": explore_path}
