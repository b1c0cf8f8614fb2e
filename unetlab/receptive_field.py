"""Theoretical receptive fields of every feature key of a U-Net, computed from its layers (``unetlab-viz`` draws them,
the report's learner part and the explorer describe them; ``unetlab.receptive_field`` re-exports them).

The field of a unit is the box of input pixels that can change it. It is computed exactly, per unit, by interval
arithmetic on unit index ranges: every Conv2d, MaxPool2d, AvgPool2d and ConvTranspose2d (and their 3D kin, along
each axis alike) maps a range of its output
units to the range of input units it reads (kernel, stride, padding, dilation taken from the module); BatchNorm,
ReLU and other element-wise layers pass ranges through; a decoder level takes the union of its two paths (the
up-sampled deep path and the skip). The image is treated as unbounded (zero padding reads pixels outside it), so a
field may reach outside the image; ``unit_field`` returns the box unclipped.

A 2x2 stride-2 transposed conv halves the jump, but each of its output units reads a single input unit, so after
two or more up-samplings the field of a decoder unit depends on the unit's position (e.g. 92 or 100 px at dec0 of a
depth-3 U-Net). ``receptive_fields`` reports the largest field over one period of positions; for cropping a unit's
patch use ``unit_field``, which is exact for every position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import NamedTuple

from torch import nn

from unetlab.conventions import level_of
from unetlab.measured_field import measured_keys, measured_unit_field
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike

# A field function maps an inclusive range of unit indices (along one axis) to the inclusive range of input pixels
# that can change them. Every layer here is monotone, so mapping the end points of a range is exact.
FieldFn = Callable[[int, int], tuple[int, int]]

PASS_THROUGH = (
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.PReLU,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
)
UPSAMPLING = (nn.ConvTranspose2d, nn.ConvTranspose3d)
SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, *UPSAMPLING)


class RF(NamedTuple):
    """Receptive field of a feature key, in input pixels.

    size: side of the largest field over unit positions and paths; jump: input pixels between neighbouring units;
    start: input coordinate of unit 0's field centre. In the encoder unit ``u``'s field is centred on
    ``start + u * jump``; after up-sampling a decoder unit's field can sit a few px off that and be smaller than
    ``size``, depending on the unit's position (``unit_field`` gives every unit's exact box).
    """

    size: int
    jump: int | float
    start: float


def _pair(value: int | Sequence[int], axis: int) -> int:
    return value if isinstance(value, int) else value[axis]


def layer_geometry(layer: nn.Module, axis: int) -> tuple[int, int, int, int]:
    """(kernel, stride, padding, dilation) of a spatial layer along ``axis`` (0 = rows, 1 = columns)."""
    kernel = _pair(layer.kernel_size, axis)
    stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size, axis)
    dilation = _pair(getattr(layer, "dilation", 1), axis)
    padding = layer.padding
    if padding == "valid":
        padding = 0
    elif padding == "same":  # PyTorch puts the smaller half of the total padding first
        padding = dilation * (kernel - 1) // 2
    return kernel, stride, _pair(padding, axis), dilation


def input_span(layer: nn.Module, first: int, last: int, axis: int = 0) -> tuple[int, int]:
    """Inclusive range of input units that output units ``first..last`` of ``layer`` read (unbounded input)."""
    if isinstance(layer, PASS_THROUGH):
        return first, last
    kernel, stride, padding, dilation = layer_geometry(layer, axis)
    if not isinstance(layer, UPSAMPLING):
        return first * stride - padding, last * stride - padding + dilation * (kernel - 1)
    # Transposed conv: output o = i * stride - padding + j * dilation for input i and kernel tap j.
    read = [
        (o + padding - j * dilation) // stride
        for o in (first, last)
        for j in range(kernel)
        if (o + padding - j * dilation) % stride == 0
    ]
    if not read:
        raise ValueError(f"{layer} leaves output unit {first} without input: its field is empty")
    return min(read), max(read)


def leaf_layers(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``module`` in registration order (the forward order of the U-Net's blocks)."""
    return [m for m in module.modules() if not list(m.children())]


def _through(layers: Sequence[nn.Module], field_of_input: FieldFn, axis: int) -> FieldFn:
    """Field function of the output of ``layers`` (applied in order) given the field function of their input."""

    def field(first: int, last: int) -> tuple[int, int]:
        for layer in reversed(layers):
            first, last = input_span(layer, first, last, axis)
        return field_of_input(first, last)

    return field


def _union(a: FieldFn, b: FieldFn) -> FieldFn:
    """Field function of a concatenation: the hull of both paths' fields (each is monotone, so the hull is too)."""

    def field(first: int, last: int) -> tuple[int, int]:
        (lo_a, hi_a), (lo_b, hi_b) = a(first, last), b(first, last)
        return min(lo_a, lo_b), max(hi_a, hi_b)

    return field


def _jumps_through(layers: Sequence[nn.Module], jump: Fraction, axis: int) -> list[Fraction]:
    """The jump after each spatial layer of ``layers``: a stride multiplies it, an up-sampling stride divides it."""
    jumps = []
    for layer in layers:
        if not isinstance(layer, SPATIAL + PASS_THROUGH):
            raise TypeError(
                f"cannot compute a receptive field through {type(layer).__name__}; "
                f"known layers: {', '.join(t.__name__ for t in SPATIAL + PASS_THROUGH)}"
            )
        if isinstance(layer, SPATIAL):
            stride = layer_geometry(layer, axis)[1]
            jump = jump / stride if isinstance(layer, UPSAMPLING) else jump * stride
            jumps.append(jump)
    return jumps


class _Key(NamedTuple):
    field: FieldFn
    jump: Fraction
    path_jumps: frozenset[Fraction]  # the jump of every layer on any path from the input to this key

    @property
    def period(self) -> int:
        """Units after which the field pattern repeats (every layer on every path then shifts by whole units)."""
        return math.lcm(*((self.jump / jump).denominator for jump in self.path_jumps))


def _extend(key: _Key, layers: Sequence[nn.Module], axis: int) -> _Key:
    jumps = _jumps_through(layers, key.jump, axis)
    return _Key(_through(layers, key.field, axis), jumps[-1] if jumps else key.jump, key.path_jumps | set(jumps))


def _identity(first: int, last: int) -> tuple[int, int]:
    return first, last


def field_functions(net: UNetLike, axis: int = 0) -> dict[str, _Key]:
    """For every feature key: its field function, jump, and the period of its field pattern (``_Key``).

    Walks the model's stages (``UNetLike.stage``): the encoder levels in order, then each decoder level (``up``, then
    the skip from the same level when the level is in ``net.skip_levels``, then ``merge``), then the head.
    """
    out: dict[str, _Key] = {}
    current = _Key(_identity, Fraction(1), frozenset({Fraction(1)}))
    for level in range(net.depth + 1):
        (block,) = net.stage(f"enc{level}")
        current = out[f"enc{level}"] = _extend(current, leaf_layers(block), axis)
    for level in reversed(range(net.depth)):
        up, merge = net.stage(f"dec{level}")
        current = _extend(current, leaf_layers(up), axis)
        if level in net.skip_levels:
            skip = out[f"enc{level}"]
            if skip.jump != current.jump:
                raise ValueError(f"dec{level}: skip jump {skip.jump} and up-path jump {current.jump} differ")
            current = _Key(_union(current.field, skip.field), current.jump, current.path_jumps | skip.path_jumps)
        current = out[f"dec{level}"] = _extend(current, leaf_layers(merge), axis)
    (head,) = net.stage("logits")
    out["logits"] = _extend(current, leaf_layers(head), axis)
    return out


def path_field_functions(net: UNetLike, axis: int = 0) -> dict[str, dict[str, FieldFn]]:
    """For every feature key, the field function of each path from the input to it, by path name: ``input`` for the
    encoder keys; for the decoder keys and the logits ``bottleneck`` (down to enc{D} and up again) and ``skip i`` for
    every kept skip at a level i at or below... above the key (entering the decoder at level i). The hull of a key's
    paths is its ``field_functions`` field (a test checks it)."""
    keys = field_functions(net, axis)
    out: dict[str, dict[str, FieldFn]] = {f"enc{level}": {"input": keys[f"enc{level}"].field} for level in
                                          range(net.depth + 1)}  # fmt: skip
    paths = {"bottleneck": keys[f"enc{net.depth}"].field}
    for level in reversed(range(net.depth)):
        up, merge = net.stage(f"dec{level}")
        paths = {name: _through(leaf_layers(up), field, axis) for name, field in paths.items()}
        if level in net.skip_levels:
            paths[f"skip {level}"] = keys[f"enc{level}"].field
        paths = {name: _through(leaf_layers(merge), field, axis) for name, field in paths.items()}
        out[f"dec{level}"] = paths
    (head,) = net.stage("logits")
    out["logits"] = {name: _through(leaf_layers(head), field, axis) for name, field in paths.items()}
    return out


def path_fields(net: UNetLike, key: str, size: tuple[int, int]) -> dict[str, tuple[list[tuple[int, int]], ...]]:
    """Per path of ``key`` (``path_field_functions``): the inclusive input rows ``(lo, hi)`` of every unit row and the
    input columns of every unit column of a key map of an image of ``size`` (H, W); unclipped."""
    _check_key(net, key)
    level = level_of(key)
    units = (size[0] // 2**level, size[1] // 2**level)
    if field_kind(net) == "measured":  # one path: the gradient support, shifted unit by unit (measured_field)
        boxes = [measured_unit_field(net, key, u, u) for u in range(max(units))]
        return {
            "measured": ([(b[0], b[1] - 1) for b in boxes[: units[0]]], [(b[2], b[3] - 1) for b in boxes[: units[1]]])
        }
    rows, cols = path_field_functions(net, 0)[key], path_field_functions(net, 1)[key]
    return {
        name: ([rows[name](u, u) for u in range(units[0])], [cols[name](v, v) for v in range(units[1])])
        for name in rows
    }


def field_kind(net: UNetLike) -> str:
    """``theoretical`` where the layers give the fields (``field_functions``), else ``measured`` (from gradient
    support, ``unetlab.measured_field``)."""
    try:
        field_functions(net, 0)
    except TypeError:
        return "measured"
    return "theoretical"


def _check_key(net: UNetLike, key: str) -> None:
    if key not in protocol.feature_keys(net):
        keys = ", ".join(protocol.feature_keys(net))
        raise KeyError(f"unknown feature key {key!r}; this depth-{net.depth} U-Net has {keys}")


def unit_field(net: UNetLike, key: str, y: int, x: int) -> tuple[int, int, int, int]:
    """Exact input box ``(y0, y1, x0, x1)`` (half-open, unclipped) of unit ``(y, x)`` of feature ``key``.

    ``image[..., y0:y1, x0:x1]`` (after padding where the box leaves the image) is the unit's receptive field.
    """
    _check_key(net, key)
    if field_kind(net) == "measured":
        return measured_unit_field(net, key, y, x)
    boxes = []
    for axis, unit in ((0, y), (1, x)):
        field = field_functions(net, axis)[key].field
        lo, hi = field(unit, unit)
        boxes += [lo, hi + 1]
    return tuple(boxes)


def _axis_fields(net: UNetLike, axis: int) -> dict[str, RF]:
    fields = {}
    for key, info in field_functions(net, axis).items():
        jump = info.jump
        extents = [info.field(unit, unit) for unit in range(info.period)]
        size = max(hi - lo + 1 for lo, hi in extents)
        lo, hi = extents[0]
        fields[key] = RF(size=size, jump=int(jump) if jump.denominator == 1 else float(jump), start=(lo + hi) / 2)
    return fields


def receptive_fields(net: UNetLike) -> dict[str, RF]:
    """Theoretical receptive field of every feature key (enc0..encD, dec{D-1}..dec0, logits), in forward order.

    ``size`` is the largest field over unit positions and over the paths reaching a key (skip and deep path). Where
    the layers do not give the fields (``field_kind``), they are measured from gradient support (``measured_field``).
    """
    if field_kind(net) == "measured":
        return {key: RF(info.size, info.jump, info.start) for key, info in measured_keys(net).items()}
    rows, cols = _axis_fields(net, 0), _axis_fields(net, 1)
    if rows != cols:
        raise ValueError("receptive_fields reports one size per key, but this network's fields are not square")
    return rows


def centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    """Centre ``(y, x)`` of a half-open box ``(y0, y1, x0, x1)`` in pixel coordinates."""
    y0, y1, x0, x1 = box
    return (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2


__all__ = [
    "RF",
    "receptive_fields",
    "unit_field",
    "field_kind",
    "centre",
    "path_fields",
    "leaf_layers",
    "layer_geometry",
]
