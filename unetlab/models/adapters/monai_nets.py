"""MONAI's U-Nets behind the ``UNetLike`` protocol (``docs/models.md``): ``BasicUNet`` and ``DynUNet`` (each class
says how its levels map to ours), and the factories that ``conf/model/monai_*.yaml`` build.

BasicUNet's levels follow our convention: ``conv_0`` is level 0 (``enc0`` at ``H x W``), ``down_i`` level ``i``
(``enc{i}`` at ``H/2**i``), ``enc4`` the bottleneck; ``upcat_{i+1}`` is decoder level ``i``, which concatenates the skip
``enc{i}`` after up-sampling, and ``final_conv`` the head. BasicUNet cannot be built without a skip, so a skip ablation
replaces the tensor that ``upcat_{i+1}`` receives as its second argument, and nothing on the encoder path.
"""

from __future__ import annotations

from torch import nn

from unetlab.models.adapters.blocks import BlockUNet
from unetlab.models.measured import MeasuredUNet


class MonaiBasicUNet(BlockUNet):
    """MONAI ``BasicUNet`` (depth 4, all four skips): ``conv_0``, ``down_1..4``; decoder level ``i`` is
    ``upcat_{i+1}`` (``upsample``, then ``convs`` after the skip joins); ``final_conv``."""

    def __init__(self, net: nn.Module, skip_levels: tuple[int, ...] | None = None):
        encoder = [net.conv_0, net.down_1, net.down_2, net.down_3, net.down_4]
        decoder = [net.upcat_1, net.upcat_2, net.upcat_3, net.upcat_4]
        super().__init__(net, encoder, decoder, net.final_conv, "upsample", "convs", skip_levels)


class MonaiDynUNet(BlockUNet):
    """MONAI ``DynUNet`` (nnU-Net's architecture) as a ``UNetLike``, for a first stride of 1 and strides of 2 after it
    (level ``i`` at ``H/2**i``): ``input_block`` is level 0, ``downsamples[i-1]`` level ``i``, ``bottleneck`` level
    ``D = len(strides) - 1``; decoder level ``i`` is the up-block that DynUNet pairs with encoder level ``i``
    (``upsamples[D-1-i]``), which concatenates ``enc{i}`` after its transposed conv; ``output_block`` is the head.
    Deep supervision heads are left out (they only add training outputs)."""

    def __init__(self, net: nn.Module, skip_levels: tuple[int, ...] | None = None):
        strides = [tuple(s) if isinstance(s, (list, tuple)) else (s,) * net.spatial_dims for s in net.strides]
        if any(s != 1 for s in strides[0]) or any(d != 2 for stride in strides[1:] for d in stride):
            raise ValueError(
                f"DynUNet strides {list(net.strides)}: the adapter needs a first stride of 1 and 2 after it, so that "
                "level i is at 1/2**i of the input (unetlab's levels)"
            )
        encoder = [net.input_block, *net.downsamples, net.bottleneck]
        decoder = list(net.upsamples)[::-1]
        super().__init__(net, encoder, decoder, net.output_block, "transp_conv", "conv_block", skip_levels)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        if getattr(self.net.conv_block, "__name__", "") == "UnetResBlock":
            raise TypeError(
                "cannot compute a receptive field through DynUNet's residual blocks (res_block=True): their shortcut "
                "is a second path, not a chain of layers"
            )
        return super().stage(key)


ADAPTERS: dict[str, type[MeasuredUNet]] = {  # "<module>.<class>" of the library network -> its adapter
    "monai.networks.nets.basic_unet.BasicUNet": MonaiBasicUNet,
    "monai.networks.nets.dynunet.DynUNet": MonaiDynUNet,
}


def monai_basic_unet(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    norm: str = "batch",
    spatial_dims: int = 2,
) -> MonaiBasicUNet:
    """``model=monai_basicunet``: MONAI's ``BasicUNet`` with ``base_channels * 2**i`` channels at level ``i`` (as our
    U-Net; ``base_channels`` again after the last up-sampling), adapted. BasicUNet is built at depth 4 only: another
    ``model.depth`` is a ValueError naming the key. Its blocks cannot be built without their skip, so a skip left out of
    ``model.skips`` is fed zeros (``BlockUNet``). ``norm``: MONAI's norm name;
    ``batch`` (the default here, as our U-Net) keeps the theoretical fields computable, ``instance`` (MONAI's default)
    makes every unit depend on the whole image."""
    from unetlab.conventions import parse_skips

    if depth != 4:
        raise ValueError(f"model.depth={depth}: MONAI's BasicUNet has depth 4 only; use model.depth=4")
    try:
        from monai.networks.nets import BasicUNet
    except ImportError:
        raise ValueError("model=monai_basicunet needs MONAI: pip install monai") from None
    features = tuple(base_channels * 2**level for level in range(5)) + (base_channels,)
    net = BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, features=features,
                    norm=norm)  # fmt: skip
    return MonaiBasicUNet(net, skip_levels=parse_skips(skips, depth))
