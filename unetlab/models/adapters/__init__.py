"""Other libraries' U-Nets behind the ``UNetLike`` protocol (``docs/models.md``): ``adapt(net)`` wraps a built network
so that every measurement of unetlab runs on it unchanged, and ``adapt(net)(x)`` equals ``net(x)`` exactly (the same
modules, called in the same order on the same tensors). One file per library; ``ADAPTERS`` maps each supported
class to its adapter.
"""

from __future__ import annotations

from torch import nn

from unetlab.models.adapters import monai_nets, nnunet_nets, smp_nets
from unetlab.models.adapters.blocks import BlockUNet
from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import UNetLike

ADAPTERS: dict[str, type[MeasuredUNet]] = {**monai_nets.ADAPTERS, **nnunet_nets.ADAPTERS, **smp_nets.ADAPTERS}

__all__ = ["ADAPTERS", "BlockUNet", "adapt"]


def adapt(net: nn.Module) -> MeasuredUNet:
    """``net`` behind the ``UNetLike`` protocol: our own U-Net as it is, a supported library U-Net wrapped
    (``ADAPTERS``); ValueError naming the class and the supported ones otherwise."""
    if isinstance(net, MeasuredUNet) and isinstance(net, UNetLike):
        return net
    name = f"{type(net).__module__}.{type(net).__qualname__}"
    if name not in ADAPTERS:
        supported = ", ".join(sorted(ADAPTERS))
        raise ValueError(f"no adapter for {name}; supported: {supported} (or implement UNetLike: docs/models.md)")
    return ADAPTERS[name](net)
