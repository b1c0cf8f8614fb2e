"""What a measurement needs of a U-Net (``docs/models.md``): the ``UNetLike`` protocol, and the few functions every
measurement builds from it (encode, decode with a transform per skip, every feature map, a random init).

Probes, floors, test-time skip ablations, Shapley values, per-object metrics, shifts, effective and theoretical
receptive fields, top-9 patches and the explorer's data use nothing else of a model, so any U-Net that implements
these members can be measured: ours (``unetlab.models.unet.UNet``) and adapters of other libraries' U-Nets.

A depth-``D`` U-Net has levels ``0..D``; level ``i`` is at ``1/2**i`` of the input's resolution. The encoder computes
``enc0..encD`` (``encD`` is the bottleneck); the decoder walks from level ``D-1`` up to ``0``, each level taking the
state of the level below (``enc{D}`` first) up to its own resolution and joining the skip ``enc{i}`` when level ``i``
has one; a head maps ``dec0`` to the logits. How a level joins its skip (concatenated, added, passed as an argument)
is the model's business: the protocol hands ``decode_level`` the skip tensor, or ``None``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from unetlab.conventions import feature_keys as keys_of_depth

SkipTransform = Callable[[int, Tensor], Tensor]  # (level, skip (B, C, *spatial)) -> same shape


@runtime_checkable
class UNetLike(Protocol):
    """A U-Net as measurements see it. Tensors are (B, C, *spatial), ``spatial_dims`` sizes each a multiple of
    ``2**depth``.

    Attributes:
        depth: number of down-samplings D (levels 0..D).
        skip_levels: the sorted levels (of 0..D-1) whose skip connection the model has.
        in_channels, num_classes: image channels and logit channels.
        spatial_dims: 2 for images, 3 for volumes.
    """

    depth: int
    skip_levels: tuple[int, ...]
    in_channels: int
    num_classes: int
    spatial_dims: int

    def channels(self, key: str) -> int:
        """Channels of feature ``key`` (``enc<i>``, ``dec<i>``, ``logits``)."""
        ...

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        """Encoder level ``level``: the image (level 0) or ``enc{level-1}`` -> ``enc{level}``."""
        ...

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        """Decoder level ``level``: the state of level ``level + 1`` (``enc{D}`` for level D-1) and the level's skip
        (``enc{level}``, maybe transformed; ``None`` when the level has no skip) -> ``dec{level}``."""
        ...

    def head(self, x: Tensor) -> Tensor:
        """``dec0`` -> logits (B, num_classes, *spatial)."""
        ...

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        """The modules that compute ``key``, for theoretical receptive fields: ``(block,)`` for ``enc<i>`` (from the
        previous level), ``(up, merge)`` for ``dec<i>`` (``up`` runs before the skip joins, ``merge`` after),
        ``(head,)`` for ``logits``. Their leaf layers must be convolutions, pools or element-wise."""
        ...


def stage_of_blocks(
    net: UNetLike,
    key: str,
    encoder: Sequence[nn.Module],
    decoder: Sequence[nn.Module],
    head: nn.Module,
    parts: tuple[str, str],
) -> tuple[nn.Module, ...]:
    """``stage(key)`` of a U-Net given as blocks: ``(encoder[i],)`` for ``enc<i>``, the decoder block's two ``parts``
    (its attributes that run before and after the skip joins) for ``dec<i>``, ``(head,)`` for ``logits``."""
    check_key(net, key)
    if key == "logits":
        return (head,)
    level = int(key[3:])
    if key.startswith("enc"):
        return (encoder[level],)
    return tuple(getattr(decoder[level], part) for part in parts)


def feature_keys(net: UNetLike, logits: bool = True) -> list[str]:
    """``enc0..encD, dec{D-1}..dec0[, logits]``: the model's feature keys in forward order."""
    return keys_of_depth(net.depth, logits=logits)


def check_key(net: UNetLike, key: str) -> None:
    """ValueError naming the model's keys unless ``key`` is one of them."""
    if key not in feature_keys(net):
        raise ValueError(
            f"unknown feature key {key!r}; this depth-{net.depth} U-Net has {', '.join(feature_keys(net))}"
        )


def channels_last(spatial_dims: int) -> torch.memory_format:
    """The channels-last memory format of (B, C, H, W) tensors, or of (B, C, D, H, W) volumes: the same maths, faster
    convolutions on CPU (scripts/bench_train.py)."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def check_input(net: UNetLike, x: Tensor) -> None:
    """ValueError for an input the model cannot take: the wrong rank or channels, or a size that is not a multiple
    of ``2**depth``."""
    dims = net.spatial_dims
    if x.ndim != 2 + dims or x.shape[1] != net.in_channels:
        axes = ", ".join("DHW"[-dims:])
        raise ValueError(f"the U-Net expects (B, {net.in_channels}, {axes}) input, got shape {tuple(x.shape)}")
    factor = 2**net.depth
    size = tuple(x.shape[2:])
    if any(side % factor for side in size):
        raise ValueError(
            f"input size {'x'.join(map(str, size))} is not a multiple of 2**depth = {factor} (depth {net.depth}); "
            f"resize or crop to a multiple of {factor}"
        )


def encode(net: UNetLike, x: Tensor, up_to: int | None = None) -> list[Tensor]:
    """Encoder features ``[enc0, ..., enc{up_to}]`` (default: to the bottleneck ``encD``)."""
    check_input(net, x)
    features = []
    for level in range(net.depth + 1 if up_to is None else up_to + 1):
        x = net.encode_level(level, x)
        features.append(x)
    return features


def skip_of(net: UNetLike, level: int, encoded: Sequence[Tensor], transform: SkipTransform | None) -> Tensor | None:
    """The skip that decoder level ``level`` joins: ``encoded[level]`` through ``transform``, or None (no skip)."""
    if level not in net.skip_levels:
        return None
    skip = encoded[level]
    return skip if transform is None else transform(level, skip)


def decode(net: UNetLike, encoded: Sequence[Tensor], skip_transform: SkipTransform | None = None) -> dict[str, Tensor]:
    """Decoder states and logits from the encoder features; ``skip_transform(level, skip)`` may change each skip.

    Returns ``{"dec{D-1}": ..., ..., "dec0": ..., "logits": (B, K, *spatial)}``.
    """
    x = encoded[net.depth]
    out: dict[str, Tensor] = {}
    for level in reversed(range(net.depth)):
        x = net.decode_level(level, x, skip_of(net, level, encoded, skip_transform))
        out[f"dec{level}"] = x
    out["logits"] = net.head(x)
    return out


def features(net: UNetLike, x: Tensor) -> dict[str, Tensor]:
    """Every feature map in forward order: ``enc0..encD, dec{D-1}..dec0, logits``."""
    encoded = encode(net, x)
    return feature_maps(encoded, decode(net, encoded))


def feature_maps(encoded: Sequence[Tensor], decoded: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """``[enc0, ...]`` and the decoder's ``{"dec{D-1}": ..., "logits": ...}`` as one dict: enc0.., dec.., logits."""
    return {f"enc{level}": feature for level, feature in enumerate(encoded)} | (decoded or {})


def logits(net: UNetLike, x: Tensor) -> Tensor:
    """The model's logits (B, K, *spatial) of ``x``."""
    return decode(net, encode(net, x))["logits"]


def labels(logits: Tensor) -> Tensor:
    """The label map of ``logits`` (B, K, *spatial) -> (B, *spatial) int64: the argmax over classes, a tie going to the
    lower class. Two classes compare their two logits instead: the same labels, ~10x faster than ``argmax`` on
    channels-last logits on a CPU (it runs for every source of every test batch)."""
    if logits.shape[1] == 2:
        return (logits[:, 1] > logits[:, 0]).long()
    return logits.argmax(dim=1)


def random_init_like(net: nn.Module, seed: int) -> nn.Module:
    """A copy of ``net`` with every module re-initialised under ``torch.manual_seed(seed)``, in the order the modules
    were made: for a model whose constructor initialises each module as it makes it (ours), the weights of
    ``torch.manual_seed(seed); Model(same arguments)``. BatchNorm running statistics return to their defaults."""
    fresh = copy.deepcopy(net)
    torch.manual_seed(seed)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):  # BatchNorm's also resets its running statistics
            module.reset_parameters()
    return fresh
