"""Effective receptive fields (Luo et al., 2016): how strongly each input pixel moves a unit, against its theoretical
field (drawn by ``unetlab.explain.pictures``).

The ERF of a feature key is the mean over N images of ``|d (sum over channels of the key's centre unit) / d input|``
(summed over the input channels): the gradient of the channel sum, then its absolute value, one backward pass per
key. The network runs in eval mode, so BatchNorm uses its running statistics and the images do not interact.
Its extent is summarised by the radius around the unit's centre holding 50% and 95% of the gradient mass, measured
as a Chebyshev (square) distance so that ``2 * radius + 1`` compares directly with the theoretical side: a square of
Chebyshev radius ``r`` around the centre holds ``2r + 1`` pixels a side. The unit's centre is the centre of the
``jump x jump`` block of input pixels it sits on; in the encoder that is also its field's centre, in the decoder the
field can sit a few px off it (see ``unetlab.receptive_field``). The gradient is zero outside the theoretical
field, so ``radius95 <= (size - 1) / 2`` up to that offset; fields larger than the image are clipped by it.

Volumes: the same in 3D, the radius a Chebyshev distance in voxels over all three axes (a cube of side ``2r + 1``);
the map kept for drawing is the slice through the unit's centre.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import RF, receptive_fields, unit_field

FRACTIONS = (0.5, 0.95)


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Run ``net`` in eval mode (BatchNorm running statistics) inside the block; restore its mode after."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class ERF:
    """Effective receptive field of the centre unit of one feature key.

    grad_map: (H, W) mean over images of |gradient| (input channels summed); unit: (y, x) of the unit in the
    feature map; centre: (y, x) input coordinate of the unit's centre (of the block of pixels it sits on); box: its
    exact theoretical field (y0, y1, x0, x1), half-open; radius50, radius95: Chebyshev radius (px) around ``centre``
    holding 50% / 95% of the gradient mass; theoretical: the key's ``RF``. Volumes: ``grad_map``, ``unit``,
    ``centre`` and ``box`` of the slice through the unit's centre, the radii over the whole volume.
    """

    key: str
    grad_map: Tensor
    unit: tuple[int, int]
    centre: tuple[float, float]
    box: tuple[int, int, int, int]
    radius50: float
    radius95: float
    theoretical: RF
    num_images: int

    @property
    def size50(self) -> float:
        """Side (px) of the centred square holding 50% of the gradient mass."""
        return 2 * self.radius50 + 1

    @property
    def size95(self) -> float:
        """Side (px) of the centred square holding 95% of the gradient mass."""
        return 2 * self.radius95 + 1


def unit_centre(unit: tuple[int, ...], jump: float) -> tuple[float, ...]:
    """Input coordinate (y, x) (volumes: (z, y, x)) of the centre of the ``jump x jump`` block of pixels that
    ``unit`` sits on."""
    return tuple((u + 0.5) * jump - 0.5 for u in unit)


def mass_radius(weights: Tensor, centre_yx: tuple[float, ...], fraction: float) -> float:
    """Smallest Chebyshev radius ``r`` such that pixels with ``max(|y - cy|, |x - cx|) <= r`` hold ``fraction`` of
    the total of ``weights`` (H, W) (non-negative); volumes (D, H, W) with a centre (cz, cy, cx) likewise. NaN if the
    weights are all zero."""
    grids = torch.meshgrid(*[torch.arange(n) for n in weights.shape], indexing="ij")
    distance = torch.stack([(grid - c).abs() for grid, c in zip(grids, centre_yx)]).amax(dim=0).flatten().double()
    mass = weights.flatten().double()
    total = mass.sum()
    if total <= 0:
        return float("nan")
    order = torch.argsort(distance, stable=True)
    cumulative = torch.cumsum(mass[order], dim=0)
    index = int(torch.searchsorted(cumulative, fraction * total * (1 - 1e-12)))
    return float(distance[order][min(index, len(order) - 1)])


def gradient_mass(feature: Tensor, x: Tensor, unit: tuple[int, ...], retain_graph: bool) -> Tensor:
    """(H, W) float64 on the CPU: |d (channel sum of ``feature`` (B, C, h, w) at ``unit``) / d ``x`` (B, C_in, H, W)|,
    summed over the input channels and the batch (the ERF's numerator); volumes: (D, H, W), one more axis each."""
    (grad,) = torch.autograd.grad(feature[(slice(None), slice(None), *unit)].sum(), x, retain_graph=retain_graph)
    return grad.abs().sum(dim=1).sum(dim=0).double().cpu()


def effective_receptive_fields(
    net: UNetLike, images: Tensor, keys: Sequence[str] | None = None, batch_size: int = 16
) -> dict[str, ERF]:
    """ERF of the centre unit of each key (default: every feature key), averaged over ``images`` (N, C, H, W) (or
    volumes (N, C, D, H, W)).

    The centre unit of a key whose map is (h, w) is ``(h // 2, w // 2)``; one forward pass per batch, one backward
    pass per key (``torch.autograd.grad`` of the unit's channel sum). Runs in eval mode.
    """
    keys = list(protocol.feature_keys(net) if keys is None else keys)
    unknown = [key for key in keys if key not in protocol.feature_keys(net)]
    if unknown:
        raise ValueError(f"unknown feature key(s) {unknown}; this U-Net has {', '.join(protocol.feature_keys(net))}")
    if images.ndim not in (4, 5) or len(images) == 0:
        raise ValueError(
            f"effective_receptive_fields needs images (N, C, H, W) or volumes (N, C, D, H, W) with N >= 1, got "
            f"{tuple(images.shape)}"
        )
    parameter = next(net.parameters())
    sums = {key: torch.zeros(images.shape[2:], dtype=torch.float64) for key in keys}
    units: dict[str, tuple[int, ...]] = {}
    with eval_mode(net):
        for batch in images.split(batch_size):
            x = batch.to(device=parameter.device, dtype=parameter.dtype).requires_grad_(True)
            features = protocol.features(net, x)
            for i, key in enumerate(keys):
                feature = features[key]
                units[key] = tuple(side // 2 for side in feature.shape[2:])
                sums[key] += gradient_mass(feature, x, units[key], retain_graph=i < len(keys) - 1)
    fields = receptive_fields(net)
    out = {}
    for key in keys:
        grad_map, unit = sums[key] / len(images), units[key]
        centre = unit_centre(unit, fields[key].jump)
        radius50, radius95 = (mass_radius(grad_map, centre, fraction) for fraction in FRACTIONS)
        if grad_map.ndim == 3:  # volumes: drawn at the slice through the unit's centre
            z = min(max(round(centre[0]), 0), grad_map.shape[0] - 1)
            grad_map, unit, centre = grad_map[z], unit[1:], centre[1:]
        box = unit_field(net, key, *unit)
        out[key] = ERF(key, grad_map, unit, centre, box, radius50, radius95, fields[key], len(images))
    return out


def format_erf_table(erfs_by_label: dict[str, dict[str, ERF]]) -> str:
    """Plain-text table: key, theoretical size, then r50/r95 (px) per label (e.g. random init, trained)."""
    labels = list(erfs_by_label)
    first = erfs_by_label[labels[0]]
    header = f"{'key':<8}{'size':>6}{'jump':>6}" + "".join(f"{label + ' r50':>18}{'r95':>7}" for label in labels)
    lines = [header]
    for key, erf in first.items():
        row = f"{key:<8}{erf.theoretical.size:>6}{erf.theoretical.jump:>6g}"
        row += "".join(
            f"{erfs_by_label[label][key].radius50:>18.1f}{erfs_by_label[label][key].radius95:>7.1f}" for label in labels
        )
        lines.append(row)
    return "\n".join(lines)
