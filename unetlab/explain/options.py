"""``VizOptions``: the ``viz.*`` keys of ``unetlab-viz``, their types and defaults. Light to import (no torch), so
that ``unetlab-viz --help`` is quick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unetlab.conventions import SPLITS


@dataclass
class VizOptions:
    """What ``unetlab-viz`` draws: the ``viz.*`` keys, their types and defaults (the schema ``viz_schema`` that
    ``conf/viz.yaml`` extends; ``unetlab-viz --cfg job`` prints them).

    ``keys`` and ``channels`` are ``Any`` because OmegaConf has no union of a scalar and a list.
    """

    keys: Any = None  # feature keys for the top-k grids, e.g. [enc1, enc3, dec0] (or one key); None = enc0..encD
    channels: Any = 8  # per key: the first N channels, or a list of channel indices like [0, 5, 12]
    top_k: int = 9  # patches per channel (one per image: the channel's maximum over that image)
    split: str = "test"  # split streamed for the top-k patches; its first erf_images images give the ERFs
    erf_images: int = 32  # images averaged for the effective receptive fields
    explore_images: int = 8  # of those, averaged for the explorer's ERFs of a 6 x 6 grid of units per key
    batch_size: int = 16
    seed: int = 0  # seeds the random-init network the ERFs are compared with
    device: str = "cpu"  # cpu | cuda
    progress: bool = True
    out_dir: str | None = None  # None = <run_dir>/viz

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"viz.split={self.split!r}; allowed: {', '.join(SPLITS)}")
        for name in ("top_k", "erf_images", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"viz.{name}={getattr(self, name)} must be >= 1")
        if isinstance(self.keys, str):
            self.keys = [self.keys]
