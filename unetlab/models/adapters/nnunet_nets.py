"""nnU-Net's U-Nets (``dynamic_network_architectures``: ``PlainConvUNet``, ``ResidualEncoderUNet``) behind the
``UNetLike`` protocol (``docs/models.md``), and the factories that ``conf/model/nnunet_*.yaml`` build.

Both networks are an encoder whose ``stages[i]`` return every level's features, and the same ``UNetDecoder``. With a
first stride of 1 and 2 after it, encoder stage ``i`` is level ``i`` (``enc{i}`` at ``H/2**i``; ResidualEncoderUNet's
stem runs before stage 0, inside level 0) and the last stage is the bottleneck. Decoder stage ``s`` works at level
``i = D-1-s``: ``transpconvs[s]`` up-samples the state of level ``i+1``, ``torch.cat((up, enc{i}), 1)`` joins the skip
as the second half of the channels, and ``stages[s]`` merges them; ``seg_layers[-1]`` is the head. A skip ablation
replaces only that second half (the encoder tensor), never the encoder path. The decoder cannot be built without a
skip, so a skip removed at training time is fed zeros of its shape (``BlockUNet``).

This module imports without the library (``adapt`` looks the classes up by name); the factories need it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unetlab.conventions import parse_skips
from unetlab.models.adapters.blocks import BlockUNet
from unetlab.models.measured import MeasuredUNet


class UpCatStage(nn.Module):
    """One level of nnU-Net's ``UNetDecoder``, as ``UNetDecoder.forward`` runs it: ``transpconv``, the skip
    concatenated after the up-sampled channels, ``stage``. Holds the library's modules, registers nothing new.

    x: (B, C_below, h, w), skip: (B, C, 2h, 2w) -> (B, C, 2h, 2w).
    """

    def __init__(self, transpconv: nn.Module, stage: nn.Module):
        super().__init__()
        self.transpconv, self.stage = transpconv, stage

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.stage(torch.cat((self.transpconv(x), skip), 1))


class NnUNetPlainConv(BlockUNet):
    """nnU-Net's ``PlainConvUNet`` (``n_stages`` = depth + 1), for a first stride of 1 and 2 after it:
    ``encoder.stages[i]`` is level ``i``; decoder level ``i`` is ``transpconvs[D-1-i]`` -> cat with ``enc{i}`` ->
    ``stages[D-1-i]``; ``seg_layers[-1]`` the head. With ``deep_supervision=True`` the network returns a list, full
    resolution first: the adapter's logits are that first output (the other heads only add training outputs)."""

    def __init__(self, net: nn.Module, skip_levels: tuple[int, ...] | None = None):
        super().__init__(net, self.encoder_levels(net), decoder_levels(net), net.decoder.seg_layers[-1],
                         "transpconv", "stage", skip_levels)  # fmt: skip

    @staticmethod
    def encoder_levels(net: nn.Module) -> list[nn.Module]:
        """The modules that compute ``enc0..encD``: the encoder's stages."""
        check_strides(net)
        return list(net.encoder.stages)


class NnUNetResEnc(NnUNetPlainConv):
    """nnU-Net's ``ResidualEncoderUNet``: as ``NnUNetPlainConv``, with level 0 the ``encoder.stem`` then
    ``encoder.stages[0]``. Its stages are residual blocks, so it has no theoretical fields (``stage`` refuses)."""

    @staticmethod
    def encoder_levels(net: nn.Module) -> list[nn.Module]:
        """``[Sequential(stem, stages[0]), stages[1], ...]``: the stem runs before stage 0, at level 0. The
        ``Sequential`` only groups the library's two modules; it is not registered on the adapter."""
        check_strides(net)
        stages = list(net.encoder.stages)
        return [nn.Sequential(net.encoder.stem, stages[0]), *stages[1:]]

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        raise TypeError(
            "cannot compute a receptive field through ResidualEncoderUNet's residual blocks: their shortcut is a "
            "second path, not a chain of layers"
        )


def check_strides(net: nn.Module) -> None:
    """ValueError naming the encoder's strides unless they are 1 for stage 0 and 2 after it (level ``i`` at
    ``1/2**i`` of the input)."""
    strides = [list(stride) for stride in net.encoder.strides]
    if any(d != 1 for d in strides[0]) or any(d != 2 for stride in strides[1:] for d in stride):
        raise ValueError(
            f"{type(net).__name__} strides {strides}: the adapter needs a first stride of 1 and 2 after it, so that "
            "level i is at 1/2**i of the input (unetlab's levels)"
        )


def decoder_levels(net: nn.Module) -> list[UpCatStage]:
    """Decoder level ``i`` (of ``0..D-1``): ``UpCatStage(transpconvs[D-1-i], stages[D-1-i])``."""
    decoder = net.decoder
    pairs = [UpCatStage(up, stage) for up, stage in zip(decoder.transpconvs, decoder.stages)]
    return pairs[::-1]


ADAPTERS: dict[str, type[MeasuredUNet]] = {  # "<module>.<class>" of the library network -> its adapter
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": NnUNetPlainConv,
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": NnUNetResEnc,
}

NORMS = {"batch": (nn.BatchNorm2d, nn.BatchNorm3d), "instance": (nn.InstanceNorm2d, nn.InstanceNorm3d)}  # 2D, 3D


def nnunet_plainconv(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    norm: str = "batch",
    spatial_dims: int = 2,
) -> NnUNetPlainConv:
    """``model=nnunet_plainconv``: nnU-Net's ``PlainConvUNet`` as nnU-Net v2 builds it (two conv-norm-LeakyReLU per
    stage in encoder and decoder, 3x3 kernels, strided convs down, transposed convs up, He init), adapted.
    ``depth + 1`` stages with ``base_channels * 2**i`` channels at level ``i`` (as our U-Net; not capped at nnU-Net's
    512 in 2D / 320 in 3D). A skip left out of ``model.skips`` is fed zeros (``BlockUNet``). ``norm``: ``batch`` (the
    default here, as our U-Net; keeps the theoretical fields computable) or ``instance`` (nnU-Net's, which makes every
    unit depend on the whole image)."""
    kwargs = nnunet_kwargs(depth, base_channels, norm, spatial_dims)
    plain_conv_unet = library_class("nnunet_plainconv", "PlainConvUNet")
    net = plain_conv_unet(in_channels, depth + 1, num_classes=num_classes, n_conv_per_stage=2,
                          n_conv_per_stage_decoder=2, **kwargs)  # fmt: skip
    net.apply(net.initialize)
    return NnUNetPlainConv(net, skip_levels=parse_skips(skips, depth))


def nnunet_resenc(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    norm: str = "batch",
    spatial_dims: int = 2,
) -> NnUNetResEnc:
    """``model=nnunet_resenc``: nnU-Net's ``ResidualEncoderUNet`` as nnU-Net v2's ResEnc planners build it (a stem,
    then 1, 3, 4, 6, 6, ... residual blocks per encoder stage, one conv-norm-LeakyReLU per decoder stage, 3x3 kernels,
    He init with each block's last norm zeroed), adapted. Channels, skips and ``norm`` as ``nnunet_plainconv``; it has
    no theoretical fields (residual blocks)."""
    kwargs = nnunet_kwargs(depth, base_channels, norm, spatial_dims)
    blocks = [1, 3, 4, *[6] * depth][: depth + 1]
    residual_encoder_unet = library_class("nnunet_resenc", "ResidualEncoderUNet")
    net = residual_encoder_unet(in_channels, depth + 1, num_classes=num_classes, n_blocks_per_stage=blocks,
                                n_conv_per_stage_decoder=1, **kwargs)  # fmt: skip
    net.apply(net.initialize)
    return NnUNetResEnc(net, skip_levels=parse_skips(skips, depth))


def library_class(model: str, name: str) -> type[nn.Module]:
    """The class ``name`` of ``dynamic_network_architectures.architectures.unet``; a one-line ValueError saying how to
    install the library for ``model=<model>`` when it is missing."""
    try:
        from dynamic_network_architectures.architectures import unet
    except ImportError:
        raise ValueError(f'model={model} needs nnU-Net\'s architectures: pip install "unetlab[zoo]"') from None
    return getattr(unet, name)


def nnunet_kwargs(depth: int, base_channels: int, norm: str, spatial_dims: int) -> dict:
    """The keyword arguments that both nnU-Net U-Nets take, as nnU-Net sets them (conv bias, affine norm with eps
    1e-5, LeakyReLU(0.01) in place, no dropout, no deep supervision); a one-line ValueError naming the ``model.*`` key
    that cannot be built."""
    if depth < 1:
        raise ValueError(f"model.depth={depth}: nnU-Net's U-Nets need at least one down-sampling; use model.depth >= 1")
    if base_channels < 1:
        raise ValueError(f"model.base_channels={base_channels}: use a positive number of channels")
    if norm not in NORMS:
        raise ValueError(f"model.norm={norm!r}: use batch or instance")
    if spatial_dims not in (2, 3):
        raise ValueError(f"model.spatial_dims={spatial_dims}: use 2 or 3")
    return {
        "features_per_stage": [base_channels * 2**level for level in range(depth + 1)],
        "conv_op": nn.Conv2d if spatial_dims == 2 else nn.Conv3d,
        "kernel_sizes": 3,
        "strides": [1] + [2] * depth,
        "conv_bias": True,
        "norm_op": NORMS[norm][spatial_dims - 2],
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "nonlin": nn.LeakyReLU,
        "nonlin_kwargs": {"inplace": True},
        "deep_supervision": False,
    }
