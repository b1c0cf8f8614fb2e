"""``EvalOptions``: the ``eval.*`` keys of ``unetlab-eval`` (and of a training run's ``eval``), their types and
defaults. Light to import (no torch until an instance is checked), so that ``unetlab-eval --help`` is quick."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalOptions:
    """What ``unetlab-eval`` computes: the ``eval.*`` keys, their types and defaults (the schema ``eval_schema`` that
    ``conf/eval.yaml`` extends; ``unetlab-eval --cfg job`` prints them)."""

    probes: bool = True
    floors: bool = True
    # Test-time skip ablations, any of: zero, mean, lowpass:k (k >= 1). lowpass:1 removes only the detail a skip
    # carries beyond the next coarser level; mean removes everything spatial (docs/ablations.md).
    ablate_modes: list[str] = field(default_factory=lambda: ["lowpass:1", "mean"])
    probe_steps: int = 100  # loss evaluations of the probes' full-batch L-BFGS (all keys train together)
    probe_images: int = 64  # training images whose frozen features the probes train on (one forward pass each)
    picture_images: int = 32  # first test images whose label maps go to label_maps.npz (the report's pictures)
    tolerance: float = 2.0  # for nsd and bf1, in the data's unit (data.unit; px without a data.spacing)
    # nsd and bf1 of the model also at these tolerances, in the same pass (rows nsd@<t>, bf1@<t>; data's unit)
    tolerances: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0])
    objects: bool = True  # per-object rows objects/<bin> (model) and floor/<level>/objects/<bin> (floors)
    # edges of the object-size bins, px of equivalent diameter (the cell sizes of levels 2..5), scaled by the spacing
    object_bins: list[float] = field(default_factory=lambda: [4.0, 8.0, 16.0, 32.0])
    # test-time shifts (kind:strength, unetlab/data/shifts.py): sources shift/<shift> and susceptibility/<shift>/<key>
    shifts: list[str] = field(default_factory=list)
    # effective receptive fields of the encoder keys, trained and at random init: sources erf/<key>, erf_init/<key>
    erf: bool = False
    erf_images: int = 16  # first test images whose gradients the ERFs average
    batch_size: int = 16
    # seeds the bootstrap resamples; the probes' pool of training images is drawn with seed + the run's seed, so the
    # runs (seeds) of a model fit their probes on different pools and the report's seed-level bootstrap resamples the
    # pools too (docs/probes-and-floors.md)
    seed: int = 0
    resamples: int = 1000  # bootstrap resamples of the test images behind every interval (>= 1000 for a 95 % interval)
    device: str = "cpu"  # cpu | cuda
    progress: bool = True

    def __post_init__(self):
        from unetlab.data.shifts import parse_shift
        from unetlab.metrics.functional import check_tolerances
        from unetlab.metrics.objects import bin_edges
        from unetlab.models.skip_ablation import parse_ablation_mode

        checks = {
            "ablate_modes": lambda modes: [parse_ablation_mode(mode) for mode in modes],
            "shifts": lambda shifts: [parse_shift(shift) for shift in shifts],
            "tolerances": check_tolerances,
            "object_bins": bin_edges,
        }
        for key, check in checks.items():
            try:
                check(getattr(self, key))
            except ValueError as err:
                raise ValueError(f"eval.{key}: {err}") from None
