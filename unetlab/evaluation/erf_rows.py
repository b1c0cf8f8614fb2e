"""Effective receptive fields as results rows, trained and at random init (``eval.erf``; ``docs/receptive-fields.md``).

For every encoder key ``enc0..encD`` (the plain stack of convolutions and poolings that Luo et al. 2016 analyse) the
ERF of the centre unit (``unetlab.erf``: mean |gradient| over images, the Chebyshev radius holding 50 % / 95 %
of its mass, side ``2 r + 1``) is measured on a canvas larger than the key's theoretical field, so that no field is
clipped by the image: each test image mirrored outwards (reflected tiling) to a side of at least the theoretical
size plus the image side, rounded up to a multiple of ``2**depth``. The same is measured on a freshly initialised
U-Net of the same architecture (seeded by the run's seed): training's effect is trained minus init.

Rows: sources ``erf/<key>`` (trained) and ``erf_init/<key>`` (random init), metrics ``size50``, ``size95`` (px of
input) and ``theoretical`` (the key's theoretical field side, ``receptive_fields``; ``measured_field`` instead for
a model whose layers do not give it: measured from gradient support, ``unetlab.measured_field``); ``n`` the images;
the interval resamples the images (their gradient maps) with the run's resamples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unetlab import sources
from unetlab.bootstrap import percentile_interval
from unetlab.erf import FRACTIONS, eval_mode, gradient_mass, unit_centre
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import field_kind, receptive_fields

ERF_METRICS = ("size50", "size95", "theoretical", "measured_field")
RESAMPLES = 200  # the interval of a size: resampled images (each resample recomputes the mass radius)


def mirror_canvas(images: Tensor, side: int) -> Tensor:
    """(N, C, H, W) -> (N, C, side, side): the images in the middle, mirrored outwards (reflected tiling, period
    ``2H``), so the content keeps the data's statistics wherever a field reaches."""
    height, width = images.shape[-2:]

    def index(size: int) -> Tensor:
        offset = (side - size) // 2
        position = (torch.arange(side) - offset) % (2 * size)
        return torch.where(position < size, position, 2 * size - 1 - position)

    return images[..., index(height)[:, None], index(width)[None, :]]


def canvas_side(net: UNetLike, height: int) -> int:
    """The smallest multiple of ``2**depth`` at least the largest encoder field plus the image side."""
    fields = receptive_fields(net)
    largest = max(fields[f"enc{level}"].size for level in range(net.depth + 1))
    step = 2**net.depth
    return step * math.ceil((largest + height) / step)


def per_image_ring_masses(net: UNetLike, canvas: Tensor, keys: list[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per key, each image's gradient mass of the centre unit on the Chebyshev rings around the unit's centre
    (``chebyshev_rings``): (rings (K,), masses (N, K)). A map is reduced to its rings at once, so memory holds one
    (S, S) map at a time."""
    parameter = next(net.parameters())
    fields = receptive_fields(net)
    found: dict[str, list[Tensor]] = {key: [] for key in keys}
    rings: dict[str, tuple[Tensor, Tensor]] = {}  # per key: the rings' distances and each pixel's ring
    with eval_mode(net):
        for image in canvas:
            x = image[None].to(device=parameter.device, dtype=parameter.dtype).requires_grad_(True)
            features = protocol.features(net, x)
            for i, key in enumerate(keys):
                unit = (features[key].shape[-2] // 2, features[key].shape[-1] // 2)
                grad = gradient_mass(features[key], x, unit, retain_graph=i < len(keys) - 1)
                if key not in rings:
                    rings[key] = chebyshev_rings(grad.shape, unit_centre(unit, fields[key].jump))
                distances, ring = rings[key]
                found[key].append(torch.zeros(len(distances), dtype=torch.float64).index_add_(0, ring, grad.flatten()))
    return {key: (rings[key][0], torch.stack(masses)) for key, masses in found.items()}


def chebyshev_rings(shape: tuple[int, int], centre: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """The Chebyshev distances to ``centre`` that occur on an (H, W) grid, ascending (K,), and each pixel's ring
    (H*W,) int64."""
    yy, xx = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
    distance = torch.maximum((yy - centre[0]).abs(), (xx - centre[1]).abs()).flatten().double()
    return torch.unique(distance, return_inverse=True)


def mass_radii(rings: Tensor, masses: Tensor, fraction: float) -> Tensor:
    """The smallest ring distance holding ``fraction`` of the mass, for each row of ``masses`` (..., K) -> (...);
    the same as ``unetlab.erf.mass_radius`` on the summed map; NaN where the mass is zero."""
    cumulative = masses.cumsum(dim=-1)
    total = cumulative[..., -1:]
    index = torch.searchsorted(cumulative.contiguous(), (fraction * total * (1 - 1e-12)).contiguous())
    radius = rings[index.clamp(max=len(rings) - 1).squeeze(-1)]
    return torch.where(total.squeeze(-1) > 0, radius, torch.nan)


def erf_rows(net: UNetLike, init: UNetLike, images: Tensor, indices: Tensor) -> list[dict]:
    """The ``erf/<key>`` and ``erf_init/<key>`` rows of the trained ``net`` and the random-init ``init`` on
    ``images`` (N, C, H, W), intervals over ``indices`` (R, N) (the first ``RESAMPLES`` used)."""
    keys = [f"enc{level}" for level in range(net.depth + 1)]
    canvas = mirror_canvas(images, canvas_side(net, images.shape[-2]))
    theoretical = receptive_fields(net)
    field_metric = "theoretical" if field_kind(net) == "theoretical" else "measured_field"
    weights = torch.zeros(min(len(indices), RESAMPLES), len(images), dtype=torch.float64)
    weights.scatter_add_(1, indices[: len(weights)], torch.ones(weights.shape, dtype=torch.float64))
    rows = []
    for trained, model in ((True, net), (False, init)):
        by_key = per_image_ring_masses(model, canvas, keys)
        for key in keys:
            rings, masses = by_key[key]
            for fraction, metric in zip(FRACTIONS, ("size50", "size95"), strict=True):
                value = 2 * float(mass_radii(rings, masses.sum(dim=0), fraction)) + 1
                low, high = percentile_interval(2 * mass_radii(rings, weights @ masses, fraction) + 1)
                rows.append(_row(sources.erf(key, trained), metric, value, len(images), low, high))
            size = float(theoretical[key].size)  # measured from gradient support where the layers do not give it
            rows.append(_row(sources.erf(key, trained), field_metric, size, len(images), size, size))
    return rows


def _row(source: str, metric: str, value: float, n: int, low: float, high: float) -> dict:
    return {
        "source": source, "metric": metric, "class": "mean", "value": value, "std": float("nan"), "n": n,
        "empty_rate": float("nan"), "ci_low": low, "ci_high": high, "unit": "px",
    }  # fmt: skip
