"""Receptive fields measured from gradient support, for models whose fields their layers do not give
(``receptive_field.py`` refuses instance norm, residual shortcuts, attention gates with instance norm, ``F.interpolate``
inside a block). ``receptive_field.field_kind(net)`` says which a model gets: ``theoretical`` or ``measured``.

Measured: on a random input of side ``2**depth * CANVAS_CELLS`` (seeded), the centre unit of every feature key is
back-propagated once (eval mode); its field is the bounding box of the input pixels whose gradient is non-zero. That
box, shifted by ``jump`` input pixels per unit, is every unit's field: exact for a translation-equivariant stack, a
close bound after up-sampling (whose fields vary a little with the unit's position), and the whole canvas where a
layer reads the whole image (instance norm). It is the support for this input and these weights: a unit can depend on
a pixel whose gradient happens to be zero here, so a measured field is a lower bound of the theoretical one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from unetlab.models import protocol
from unetlab.models.protocol import UNetLike

CANVAS_CELLS = 24  # canvas side in bottleneck cells: 384 px at depth 4, larger than the fields of these U-Nets
_CACHE: dict[int, tuple[UNetLike, dict[str, MeasuredKey]]] = {}  # id(net) -> (net, fields), the net kept alive


class MeasuredKey(NamedTuple):
    """The centre unit's box relative to its position: ``unit * jump + offset`` gives a unit's box, half-open."""

    jump: int
    offsets: tuple[int, int, int, int]  # (y0, y1, x0, x1) minus (cy * jump, cy * jump, cx * jump, cx * jump)
    size: int  # the box's larger side, in input pixels
    start: float  # input coordinate of unit 0's field centre


def measured_keys(net: UNetLike) -> dict[str, MeasuredKey]:
    """Every feature key's measured field (cached per network object: weights do not change between calls of one
    command)."""
    cached = _CACHE.get(id(net))
    if cached is not None and cached[0] is net:
        return cached[1]
    side = 2**net.depth * CANVAS_CELLS
    generator = torch.Generator().manual_seed(0)
    parameter = next(net.parameters())
    x = torch.rand(1, net.in_channels, side, side, generator=generator).to(parameter.device, parameter.dtype)
    x.requires_grad_(True)
    was_training = net.training
    net.eval()
    try:
        features = protocol.features(net, x)
        keys = protocol.feature_keys(net)
        found = {}
        for key in keys:
            feature = features[key]
            jump = side // feature.shape[-1]
            alive = alive_unit(feature, x)
            if alive is None:  # no unit tried depends on the input: its own grid cell, size 0
                found[key] = MeasuredKey(jump, (0, jump, 0, jump), 0, (jump - 1) / 2)
                continue
            cy, cx, support = alive
            rows, cols = support.any(dim=1).nonzero().flatten(), support.any(dim=0).nonzero().flatten()
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            offsets = (y0 - cy * jump, y1 - cy * jump, x0 - cx * jump, x1 - cx * jump)
            found[key] = MeasuredKey(jump, offsets, max(y1 - y0, x1 - x0), (offsets[0] + offsets[1] - 1) / 2)
    finally:
        net.train(was_training)
    _CACHE[id(net)] = (net, found)
    return found


def alive_unit(feature: torch.Tensor, x: torch.Tensor, tries: int = 64) -> tuple[int, int, torch.Tensor] | None:
    """A unit of ``feature`` (1, C, h, w) whose gradient on ``x`` is not zero everywhere (a unit behind dead ReLUs has
    none), the nearest the centre of ``tries`` units spread over the map, and its support (H, W) on the input; None
    where no such unit has a gradient (the key does not depend on the input there)."""
    h, w = feature.shape[-2:]
    step = max(1, int((h * w / tries) ** 0.5))
    units = [(y, x_) for y in range(step // 2, h, step) for x_ in range(step // 2, w, step)]
    units.sort(key=lambda unit: max(abs(unit[0] - h // 2), abs(unit[1] - w // 2)))
    for y, x_ in units[:tries]:
        (grad,) = torch.autograd.grad(feature[0, :, y, x_].sum(), x, retain_graph=True)
        support = grad[0].abs().sum(dim=0) > 0
        if support.any():
            return y, x_, support
    return None


def measured_unit_field(net: UNetLike, key: str, y: int, x: int) -> tuple[int, int, int, int]:
    """The measured box ``(y0, y1, x0, x1)`` (half-open, unclipped) of unit ``(y, x)`` of ``key``."""
    info = measured_keys(net)[key]
    oy0, oy1, ox0, ox1 = info.offsets
    return y * info.jump + oy0, y * info.jump + oy1, x * info.jump + ox0, x * info.jump + ox1
