"""MONAI's U-Nets behind the ``UNetLike`` protocol (``docs/models.md``): ``BasicUNet``, ``DynUNet``, ``UNet`` and
``AttentionUnet`` (each class says how its levels map to ours), and the factories that ``conf/model/monai_*.yaml``
build.

BasicUNet's levels follow our convention: ``conv_0`` is level 0 (``enc0`` at ``H x W``), ``down_i`` level ``i``
(``enc{i}`` at ``H/2**i``), ``enc4`` the bottleneck; ``upcat_{i+1}`` is decoder level ``i``, which concatenates the skip
``enc{i}`` after up-sampling, and ``final_conv`` the head. BasicUNet cannot be built without a skip, so a skip ablation
replaces the tensor that ``upcat_{i+1}`` receives as its second argument, and nothing on the encoder path. None of
these networks can be built without a skip: a skip removed at training time is fed zeros of its shape.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from unetlab.conventions import check_depth, parse_skips
from unetlab.models.adapters.blocks import BlockUNet, zero_skip
from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import check_key


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


class MonaiUNet(MeasuredUNet):
    """MONAI ``UNet`` as a ``UNetLike``, for strides of 2. MONAI nests ``Sequential(down_k, SkipConnection(sub),
    up_k)`` (block ``k = 0..D-1``, ``D = len(channels) - 1``), the innermost ``sub`` being the stride-1 bottom layer;
    ``SkipConnection`` returns ``cat([x, sub(x)])``. Its first down layer already halves the image, so:

    - ``enc0`` is the image itself (B, in_channels, H, W): level 0 has no features and no skip;
    - ``enc{i}``, ``i = 1..D-1``, is the output of down layer ``i-1``: (B, channels[i-1], H/2**i, W/2**i);
    - ``enc{D}`` is what the innermost ``SkipConnection`` returns: ``cat([d, bottom(d)])`` of the last down layer's
      output ``d``, (B, channels[D-1] + channels[D], H/2**D, W/2**D). Both halves are at the bottleneck's resolution,
      so this concatenation is part of the bottleneck, not a skip across resolutions;
    - ``dec{i}``, ``i = D-1..1``, is what ``SkipConnection`` at level ``i`` returns: ``cat([enc{i}, up_i(state of level
      i+1)])``, (B, 2 * channels[i-1], H/2**i, W/2**i); the skip is the encoder half ``enc{i}``;
    - ``dec0`` is the top up layer's output, already the logits (B, out_channels, H, W): the head is the identity.

    Skips at levels 1..D-1 (``skip_levels`` a subset: a removed one is fed zeros of its shape, since the up layers
    expect the concatenation). ``stage`` refuses residual units (``num_res_units > 0``)."""

    def __init__(self, net: nn.Module, skip_levels: tuple[int, ...] | None = None):
        super().__init__()
        self.net = net  # registers the library's modules once, under their own names
        self.depth = len(net.channels) - 1  # MONAI ignores strides beyond len(channels) - 1
        strides = [tuple(s) if isinstance(s, (list, tuple)) else (s,) * net.dimensions for s in net.strides]
        if any(d != 2 for stride in strides[: self.depth] for d in stride):
            raise ValueError(
                f"MONAI UNet strides {list(net.strides)}: the adapter needs strides of 2, so that level i is at "
                "1/2**i of the input (unetlab's levels)"
            )
        downs, connections, ups = [], [], []  # plain lists: the modules stay registered under self.net alone
        block = net.model
        for _ in range(self.depth):
            down, connection, up = block  # Sequential(down_k, SkipConnection(sub), up_k)
            downs.append(down)
            connections.append(connection)
            ups.append(up)
            block = connection.submodule
        self._downs, self._connections, self._ups = downs, connections, ups
        self.skip_levels = tuple(range(1, self.depth)) if skip_levels is None else tuple(sorted(skip_levels))
        if not set(self.skip_levels) <= set(range(1, self.depth)):
            raise ValueError(
                f"skip levels {list(self.skip_levels)}: MONAI's UNet has skips at levels 1..{self.depth - 1} only "
                "(its first layer already halves the image, so level 0 has none)"
            )
        self.in_channels, self.num_classes, self.spatial_dims = net.in_channels, net.out_channels, net.dimensions
        self.train(net.training)  # the wrapper starts in the network's own mode

    def channels(self, key: str) -> int:
        check_key(self, key)
        width = self.net.channels
        if key in ("dec0", "logits"):
            return self.num_classes
        level = int(key[3:])
        if key.startswith("dec"):
            return 2 * width[level - 1]
        if level == 0:
            return self.in_channels
        return width[level - 1] + (width[level] if level == self.depth else 0)

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        if level == 0:
            return x
        down = self._downs[level - 1](x)
        return self._connections[level - 1](down) if level == self.depth else down

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        up = self._ups[level](x)
        if level == 0:
            return up
        if skip is None:  # a skip removed at training time: zeros where the library concatenates enc{level}
            skip = zero_skip(x, self.net.channels[level - 1])
        return torch.cat([skip, up], dim=1)  # SkipConnection's order: its input, then its submodule's output

    def head(self, x: Tensor) -> Tensor:
        return x

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        """``enc{D}``'s stage is the last down layer and the bottom layer in a chain: the bottom layer's stride-1
        odd kernel reads each unit's own position, so the field of ``bottom(d)`` holds that of ``d`` and is the field
        of their concatenation. The identity stands for ``enc0``, each decoder level's merge and the head."""
        check_key(self, key)
        if self.net.num_res_units > 0:
            raise TypeError(
                f"cannot compute a receptive field through MONAI UNet's residual units (num_res_units="
                f"{self.net.num_res_units}): their shortcut is a second path, not a chain of layers"
            )
        if key in ("enc0", "logits"):
            return (nn.Identity(),)
        level = int(key[3:])
        if key.startswith("dec"):
            return self._ups[level], nn.Identity()
        if level == self.depth:
            return (nn.Sequential(self._downs[level - 1], self._connections[level - 1].submodule),)
        return (self._downs[level - 1],)


class AttentionDecoder(nn.Module):
    """Decoder level ``i`` of MONAI's ``AttentionUnet``: its ``AttentionLayer`` at level ``i`` from the state of level
    ``i+1`` on, called with the skip as an argument. ``forward(x, skip)``: x (B, channels[i+1], h, w), skip
    (B, channels[i], 2h, 2w) -> (B, channels[i], 2h, 2w), as ``AttentionLayer.forward`` computes it."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.upconv, self.attention, self.merge = layer.upconv, layer.attention, layer.merge

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        fromlower = self.upconv(x)
        gated = self.attention(g=fromlower, x=skip)
        return self.merge(torch.cat((gated, fromlower), dim=1))


class MonaiAttentionUnet(BlockUNet):
    """MONAI ``AttentionUnet`` (Oktay et al. 2018) as a ``UNetLike``, for strides of 2. ``model[0]`` (a stride-1
    ``ConvBlock``) is level 0; MONAI nests ``AttentionLayer`` ``k = 0..D-1`` (``D = len(channels) - 1``), each
    calling ``submodule`` on its input ``x = enc{k}`` and gating ``x`` with the up-sampled result. Level ``k+1`` of
    the encoder is the ``ConvBlock`` that opens layer ``k``'s submodule (the submodule itself at ``k = D-1``: the
    bottleneck); decoder level ``k`` is layer ``k`` from its ``upconv`` on: ``upconv``, the attention gate on the skip
    ``enc{k}`` and the ``merge`` of the gated skip with the up-sampled state (``AttentionDecoder``); ``model[2]`` is
    the head. A skip ablation replaces the tensor the gate receives as ``x`` (so also what is merged), never the
    submodule's input.

    The gate is point-wise (1x1 convs, BatchNorm, ReLU, sigmoid, product), so a gated unit depends on the skip and
    the up-sampled state at its own position: its field is their union, as for a concatenation, and the theoretical
    fields take ``upconv`` before the skip joins and ``merge`` after. MONAI builds ``merge`` with instance norm
    (not configurable), so the fields of an ``AttentionUnet`` as built are refused naming ``InstanceNorm2d``."""

    def __init__(self, net: nn.Module, skip_levels: tuple[int, ...] | None = None):
        depth = len(net.channels) - 1
        strides = [tuple(s) if isinstance(s, (list, tuple)) else (s,) * net.dimensions for s in net.strides]
        if any(d != 2 for stride in strides[:depth] for d in stride):
            raise ValueError(
                f"AttentionUnet strides {list(net.strides)}: the adapter needs strides of 2, so that level i is at "
                "1/2**i of the input (unetlab's levels)"
            )
        first, layer, reduce_channels = net.model
        encoder, decoder = [first], []
        for k in range(depth):
            decoder.append(AttentionDecoder(layer))
            if k < depth - 1:
                down, layer = layer.submodule  # Sequential(ConvBlock, the next AttentionLayer)
            else:
                down = layer.submodule  # the bottom ConvBlock
            encoder.append(down)
        super().__init__(net, encoder, decoder, reduce_channels, "upconv", "merge", skip_levels)


ADAPTERS: dict[str, type[MeasuredUNet]] = {  # "<module>.<class>" of the library network -> its adapter
    "monai.networks.nets.basic_unet.BasicUNet": MonaiBasicUNet,
    "monai.networks.nets.dynunet.DynUNet": MonaiDynUNet,
    "monai.networks.nets.unet.UNet": MonaiUNet,
    "monai.networks.nets.attentionunet.AttentionUnet": MonaiAttentionUnet,
}


def monai_networks(config: str):
    """MONAI's ``monai.networks.nets`` for ``model=<config>``; ValueError in one line when MONAI is not installed."""
    try:
        from monai.networks import nets
    except ImportError:
        raise ValueError(f"model={config} needs MONAI: pip install monai") from None
    return nets


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
    if depth != 4:
        raise ValueError(f"model.depth={depth}: MONAI's BasicUNet has depth 4 only; use model.depth=4")
    features = tuple(base_channels * 2**level for level in range(5)) + (base_channels,)
    nets = monai_networks("monai_basicunet")
    net = nets.BasicUNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, features=features, norm=norm
    )
    return MonaiBasicUNet(net, skip_levels=parse_skips(skips, depth))


def monai_unet(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    norm: str = "batch",
    act: str = "relu",
    num_res_units: int = 0,
    spatial_dims: int = 2,
) -> MonaiUNet:
    """``model=monai_unet``: MONAI's ``UNet`` with ``depth`` stride-2 down layers, adapted (``MonaiUNet``). Its first
    layer already halves the image, so MONAI's ``channels[i]`` sits at level ``i+1``: ``channels = (2b, 4b, ..., 2**D
    b, 2**D b)`` (``b = base_channels``) gives level ``i >= 1`` ``base_channels * 2**i`` channels, as our U-Net, and
    the stride-1 bottom layer the bottleneck's ``2**D b``. ``skips``: ``all`` is levels 1..D-1 (level 0 has no skip:
    naming it is a ValueError naming ``model.skips``); a skip left out is fed zeros.

    ``norm`` and ``act``: MONAI's names. ``batch`` and ``relu`` (the defaults here, as our U-Net) keep the
    theoretical fields computable; MONAI's defaults are ``instance`` (every unit then depends on the whole image)
    and ``prelu`` (element-wise, but not among the layers ``unetlab/receptive_field.py`` knows). ``num_res_units``:
    MONAI's residual units, 0 here (MONAI's default too) so that the fields are computable: a residual unit's
    shortcut is a second path, and ``stage`` refuses it."""
    check_depth(depth)
    if isinstance(skips, str) and skips.strip().lower() == "all":
        skip_levels = tuple(range(1, depth))
    else:
        skip_levels = parse_skips(skips, depth)
        if 0 in skip_levels:
            raise ValueError(
                f"model.skips={list(skip_levels)}: MONAI's UNet has no skip at level 0 (its first layer already "
                f"halves the image); its skips are levels {list(range(1, depth))}"
            )
    channels = tuple(base_channels * 2 ** min(level + 1, depth) for level in range(depth + 1))
    nets = monai_networks("monai_unet")
    net = nets.UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=channels,
        strides=(2,) * depth,
        num_res_units=num_res_units,
        act=act,
        norm=norm,
    )
    return MonaiUNet(net, skip_levels=skip_levels)


def monai_dynunet(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    norm: str = "batch",
    spatial_dims: int = 2,
) -> MonaiDynUNet:
    """``model=monai_dynunet``: MONAI's ``DynUNet`` (nnU-Net's architecture) with 3x3 kernels, strides ``[1, 2, ...,
    2]`` (level ``i`` at ``H/2**i``), 2x2 transposed convs, ``filters = base_channels * 2**i`` at level ``i`` (as our
    U-Net), plain blocks (``res_block=False``) and no deep supervision, adapted (``MonaiDynUNet``). Its up-blocks
    cannot be built without their skip, so a skip left out of ``model.skips`` is fed zeros. ``norm``: MONAI's norm
    name; ``batch`` (the default here, as our U-Net) keeps the theoretical fields computable, ``instance`` (MONAI's
    default) makes every unit depend on the whole image."""
    check_depth(depth)
    filters = [base_channels * 2**level for level in range(depth + 1)]
    nets = monai_networks("monai_dynunet")
    net = nets.DynUNet(
        spatial_dims,
        in_channels,
        num_classes,
        kernel_size=[3] * (depth + 1),
        strides=[1] + [2] * depth,
        upsample_kernel_size=[2] * depth,
        filters=filters,
        norm_name=norm,
        res_block=False,
    )
    return MonaiDynUNet(net, skip_levels=parse_skips(skips, depth))


def monai_attentionunet(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    spatial_dims: int = 2,
) -> MonaiAttentionUnet:
    """``model=monai_attentionunet``: MONAI's ``AttentionUnet`` with ``base_channels * 2**i`` channels at level ``i``
    (as our U-Net) and strides of 2, adapted (``MonaiAttentionUnet``). Its gates have ``base_channels * 2**i // 2``
    channels, so ``model.base_channels`` must be 2 or more. MONAI fixes the norms (BatchNorm, instance norm in each
    level's merge), so there is no ``norm`` key, and the theoretical fields are refused. A skip left out of
    ``model.skips`` is fed zeros: the gate then passes zeros, and the merge sees only the up-sampled state."""
    check_depth(depth)
    if base_channels < 2:
        raise ValueError(
            f"model.base_channels={base_channels}: AttentionUnet's gates have base_channels // 2 channels at level 0; "
            "use model.base_channels=2 or more"
        )
    channels = tuple(base_channels * 2**level for level in range(depth + 1))
    nets = monai_networks("monai_attentionunet")
    net = nets.AttentionUnet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=channels,
        strides=(2,) * depth,
    )
    return MonaiAttentionUnet(net, skip_levels=parse_skips(skips, depth))
