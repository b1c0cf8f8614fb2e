"""Other libraries' U-Nets behind the ``UNetLike`` protocol (``docs/models.md``): ``adapt(net)`` wraps a built network
so that every measurement of unetlab runs on it unchanged, and ``adapt(net)(x)`` equals ``net(x)`` exactly (the same
modules, called in the same order on the same tensors).

Supported so far: MONAI's ``BasicUNet`` and ``DynUNet`` (each class says how its levels map to ours). BasicUNet's
levels follow our convention: ``conv_0`` is level 0 (``enc0`` at ``H x W``), ``down_i`` level ``i`` (``enc{i}`` at
``H/2**i``), ``enc4`` the bottleneck; ``upcat_{i+1}`` is decoder level ``i``, which concatenates the skip ``enc{i}``
after up-sampling, and ``final_conv`` the head. Every level has its skip (``skip_levels`` is ``0..3``): BasicUNet
cannot be built without one, so a skip ablation replaces the tensor that ``upcat_{i+1}`` receives as its second
argument, and nothing on the encoder path.
"""

from __future__ import annotations

from torch import Tensor, nn

from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import UNetLike, check_key, stage_of_blocks

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class BlockUNet(MeasuredUNet):
    """A U-Net given as its blocks: ``encoder[i]`` computes level ``i`` (from the image at 0, from level ``i-1``
    after), ``decoder[i]`` is called ``decoder[i](state of level i+1, skip)`` and returns level ``i``'s decoder
    state, ``head`` maps ``dec0`` to the logits; ``up`` and ``merge`` name the parts of a decoder block that run before
    and after its skip joins (for the theoretical fields). The protocol's members follow from these; an adapter only
    says which of the library's modules are which. Every level has its skip."""

    def __init__(
        self,
        net: nn.Module,
        encoder: list[nn.Module],
        decoder: list[nn.Module],
        head: nn.Module,
        up: str,
        merge: str,
    ):
        super().__init__()
        self.net = net  # registers the library's modules once, under their own names
        self._encoder, self._decoder, self._head, self._parts = encoder, decoder, head, (up, merge)
        self.depth = len(encoder) - 1
        self.skip_levels = tuple(range(self.depth))
        first = next(m for m in encoder[0].modules() if isinstance(m, CONVS))
        self.in_channels, self.spatial_dims = first.in_channels, len(first.kernel_size)
        self.num_classes = [m for m in head.modules() if isinstance(m, CONVS)][-1].out_channels
        self.train(net.training)  # the wrapper starts in the network's own mode

    def channels(self, key: str) -> int:
        check_key(self, key)
        convs = [m for block in BlockUNet.stage(self, key) for m in block.modules() if isinstance(m, CONVS)]
        return convs[-1].out_channels

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        return self._encoder[level](x)

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        return self._decoder[level](x, skip)

    def head(self, x: Tensor) -> Tensor:
        return self._head(x)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        return stage_of_blocks(self, key, self._encoder, self._decoder, self._head, self._parts)


class MonaiBasicUNet(BlockUNet):
    """MONAI ``BasicUNet`` (depth 4, all four skips): ``conv_0``, ``down_1..4``; decoder level ``i`` is
    ``upcat_{i+1}`` (``upsample``, then ``convs`` after the skip joins); ``final_conv``."""

    def __init__(self, net: nn.Module):
        encoder = [net.conv_0, net.down_1, net.down_2, net.down_3, net.down_4]
        decoder = [net.upcat_1, net.upcat_2, net.upcat_3, net.upcat_4]
        super().__init__(net, encoder, decoder, net.final_conv, up="upsample", merge="convs")


class MonaiDynUNet(BlockUNet):
    """MONAI ``DynUNet`` (nnU-Net's architecture) as a ``UNetLike``, for a first stride of 1 and strides of 2 after it
    (level ``i`` at ``H/2**i``): ``input_block`` is level 0, ``downsamples[i-1]`` level ``i``, ``bottleneck`` level
    ``D = len(strides) - 1``; decoder level ``i`` is the up-block that DynUNet pairs with encoder level ``i``
    (``upsamples[D-1-i]``), which concatenates ``enc{i}`` after its transposed conv; ``output_block`` is the head.
    Deep supervision heads are left out (they only add training outputs)."""

    def __init__(self, net: nn.Module):
        strides = [tuple(s) if isinstance(s, (list, tuple)) else (s,) * net.spatial_dims for s in net.strides]
        if any(s != 1 for s in strides[0]) or any(d != 2 for stride in strides[1:] for d in stride):
            raise ValueError(
                f"DynUNet strides {list(net.strides)}: the adapter needs a first stride of 1 and 2 after it, so that "
                "level i is at 1/2**i of the input (unetlab's levels)"
            )
        encoder = [net.input_block, *net.downsamples, net.bottleneck]
        decoder = list(net.upsamples)[::-1]
        super().__init__(net, encoder, decoder, net.output_block, up="transp_conv", merge="conv_block")

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        if getattr(self.net.conv_block, "__name__", "") == "UnetResBlock":
            raise TypeError(
                "cannot compute a receptive field through DynUNet's residual blocks (res_block=True): their shortcut "
                "is a second path, not a chain of layers"
            )
        return super().stage(key)


ADAPTERS = {
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
    U-Net; ``base_channels`` again after the last up-sampling), adapted. BasicUNet is built at depth 4 with every skip
    only: another ``model.depth`` or ``model.skips`` is a ValueError naming the key. ``norm``: MONAI's norm name;
    ``batch`` (the default here, as our U-Net) keeps the theoretical fields computable, ``instance`` (MONAI's default)
    makes every unit depend on the whole image."""
    from unetlab.conventions import parse_skips

    if depth != 4:
        raise ValueError(f"model.depth={depth}: MONAI's BasicUNet has depth 4 only; use model.depth=4")
    if parse_skips(skips, depth) != (0, 1, 2, 3):
        raise ValueError(
            f"model.skips={skips}: MONAI's BasicUNet cannot be built without a skip; use model.skips=all "
            "(every skip can still be ablated at test time)"
        )
    try:
        from monai.networks.nets import BasicUNet
    except ImportError:
        raise ValueError("model=monai_basicunet needs MONAI: pip install monai") from None
    features = tuple(base_channels * 2**level for level in range(5)) + (base_channels,)
    net = BasicUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, features=features,
                    norm=norm)  # fmt: skip
    return MonaiBasicUNet(net)


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
