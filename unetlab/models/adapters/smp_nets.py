"""segmentation_models_pytorch's ``Unet`` behind the ``UNetLike`` protocol (``docs/models.md``), and the factory that
``conf/model/smp_unet.yaml`` builds.

smp's ``Unet`` (0.5 and later): its encoder returns ``[image, f1, ..., fD]``, ``f_i`` at ``H/2**i`` (``D`` =
``encoder_depth``); ``UnetDecoder`` drops the image (smp has no full-resolution skip), runs ``center`` on ``fD``, then
``blocks[k]`` (``k = 0..D-1``), each up-sampling to the next feature's size with ``F.interpolate`` and concatenating
``f_{D-1-k}``, passed as ``skip_connection=`` (the last block gets ``None``); ``segmentation_head`` maps the last
block's output to the masks. In our levels: ``enc0`` is the image, ``enc{i}`` the encoder's ``f_i``, decoder level ``i``
is ``blocks[D-1-i]`` (after ``center`` at level ``D-1``), the skips are levels ``1..D-1`` and the head is
``segmentation_head``. A skip ablation replaces only the ``skip_connection`` a block receives, never the encoder path.

smp is imported only where a network is built or split, so that this file (and ``unetlab.models.adapters``) imports
without it.
"""

from __future__ import annotations

from torch import Tensor, nn

from unetlab.conventions import check_depth, parse_skips
from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import check_key


class SmpUnet(MeasuredUNet):
    """smp ``Unet`` with one of the encoders that ``encoder_stages`` splits into levels (smp's ResNet encoders:
    ``resnet*``, ``resnext*``; timm-universal ``tu-`` CNN encoders); ValueError naming any other encoder.

    The skip levels are read from the decoder's blocks: level ``i`` has a skip when ``blocks[D-1-i]`` was built for
    one (its first conv takes more channels than the state it up-samples). ``smp_unet`` builds a removed level's block
    without its skip; smp's own ``UnetDecoder.forward`` hands every block its skip, so such a network runs through
    this adapter only. The classification head (``aux_params``) is left out: it only adds a training output."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net  # registers the library's modules once, under their own names
        self.depth = len(net.decoder.blocks)
        self._stages = encoder_stages(net.encoder, self.depth)  # plain lists: the modules stay registered under net
        self._blocks = list(net.decoder.blocks)[::-1]  # decoder level i -> blocks[D-1-i]
        first = next(m for m in self._stages[0].modules() if isinstance(m, nn.Conv2d))
        self.in_channels, self.spatial_dims = first.in_channels, 2
        self.num_classes = net.segmentation_head[0].out_channels
        self.skip_levels = tuple(level for level in range(self.depth) if self._skip_channels(level) > 0)
        self.train(net.training)  # the wrapper starts in the network's own mode

    def _skip_channels(self, level: int) -> int:
        """Channels of the skip that decoder level ``level``'s block was built for (0: none)."""
        below = f"enc{self.depth}" if level == self.depth - 1 else f"dec{level + 1}"
        return self._blocks[level].conv1[0].in_channels - self.channels(below)

    def channels(self, key: str) -> int:
        check_key(self, key)
        if key == "logits":
            return self.num_classes
        level = int(key[3:])
        if key.startswith("dec"):
            return self._blocks[level].conv2[0].out_channels
        return self.in_channels if level == 0 else self.net.encoder.out_channels[level]

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        """(B, C, H/2**(level-1), W/2**(level-1)) -> (B, C', H/2**level, W/2**level); level 0 is the image itself."""
        return x if level == 0 else self._stages[level - 1](x)

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        """The state (B, C, h, w) of level ``level + 1`` and the skip (B, C_skip, 2h, 2w) or None -> (B, C', 2h, 2w),
        by the block's own call: ``block(x, 2h, 2w, skip_connection=skip)`` (``center`` first at level ``D-1``)."""
        if level == self.depth - 1:
            x = self.net.decoder.center(x)
        height, width = (2 * side for side in x.shape[2:])
        return self._blocks[level](x, height, width, skip_connection=skip)

    def head(self, x: Tensor) -> Tensor:
        """dec0 (B, C, H, W) -> logits (B, K, H, W)."""
        return self.net.segmentation_head(x)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        check_key(self, key)
        if type(self.net.encoder).__name__ == "ResNetEncoder":
            raise TypeError(
                "cannot compute a receptive field through smp's ResNet encoder: its residual blocks' shortcut is a "
                "second path, not a chain of layers"
            )
        raise TypeError(
            "cannot compute a receptive field through smp's Unet: its decoder blocks up-sample with F.interpolate "
            "inside their forward, not with a layer that unetlab/receptive_field.py can read"
        )


ADAPTERS: dict[str, type[MeasuredUNet]] = {  # "<module>.<class>" of the library network -> its adapter
    "segmentation_models_pytorch.decoders.unet.model.Unet": SmpUnet,
}


def encoder_stages(encoder: nn.Module, depth: int) -> list[nn.Module]:
    """The encoder's levels as modules: ``stages[i-1]`` maps ``enc{i-1}`` (B, C, h, w) to ``enc{i}`` (B, C', h/2, w/2),
    calling the modules that the encoder's own forward calls between its features ``i-1`` and ``i``, in its order.
    ValueError for an encoder that is dilated or that no split here reproduces."""
    from segmentation_models_pytorch.encoders.resnet import ResNetEncoder
    from segmentation_models_pytorch.encoders.timm_universal import TimmUniversalEncoder
    from timm.models import FeatureListNet

    if type(encoder) is ResNetEncoder:  # features: relu(bn1(conv1(x))), layer1(maxpool(.)), layer2, layer3, layer4
        stem = nn.Sequential(encoder.conv1, encoder.bn1, encoder.relu)
        stages = [stem, nn.Sequential(encoder.maxpool, encoder.layer1), encoder.layer2, encoder.layer3, encoder.layer4]
        stages = stages[:depth]
    elif (
        type(encoder) is TimmUniversalEncoder
        and type(encoder.model) is FeatureListNet
        and not encoder._is_channel_last
        and not encoder._is_transformer_style
    ):
        stages = feature_list_stages(encoder.model, encoder._is_vgg_style)
    else:
        raise ValueError(
            f"no per-level split of smp's {type(encoder).__name__}: supported are smp's ResNet encoders (resnet*, "
            "resnext*) and timm-universal tu- encoders that timm builds as a FeatureListNet with NCHW features from "
            "1/2 of the input (e.g. tu-resnet18, tu-regnetx_002, tu-vgg11)"
        )
    if encoder.output_stride != 2**depth:
        raise ValueError(
            f"smp encoder with output stride {encoder.output_stride} at depth {depth}: a dilated encoder's levels are "
            "not at 1/2**i of the input (unetlab's levels); build it with the default output_stride"
        )
    return stages


def feature_list_stages(model: nn.Module, vgg_style: bool) -> list[nn.Module]:
    """The levels of a timm ``FeatureListNet``: its forward runs its modules in order and returns the outputs of its
    return layers; level ``i`` is the run of modules that ends at the return layer of ``f_i``. A VGG-style model's
    first return layer is at full resolution (``f_0``, which smp's decoder drops): it is part of level 1's run."""
    ends = list(model.return_layers)[1:] if vgg_style else list(model.return_layers)
    stages, run = [], []
    for name, module in model.items():
        run.append(module)
        if name in ends:
            stages.append(nn.Sequential(*run))
            run = []
    return stages


def smp_unet(
    in_channels: int,
    num_classes: int,
    depth: int = 4,
    base_channels: int = 32,
    skips="all",
    encoder_name: str = "resnet18",
    encoder_weights: str | None = None,
    spatial_dims: int = 2,
) -> SmpUnet:
    """``model=smp_unet``: smp's ``Unet(encoder_name, encoder_depth=depth, encoder_weights=...)``, adapted
    (``SmpUnet``). The encoder's channels are the encoder's own; ``decoder_channels`` are ``base_channels * 2**i`` at
    decoder level ``i``, as our U-Net's decoder: ``(b * 2**(D-1), ..., 2b, b)`` in smp's order (deepest block first).
    ``model.depth`` the encoder cannot build is a one-line ValueError naming it. ``skips``: ``all`` is levels
    ``1..D-1`` (smp has no full-resolution skip: level 0 is a ValueError naming ``model.skips``); a removed level's
    decoder block is built without its skip (``UnetDecoderBlock(in, 0, out)``: fewer weights, nothing fed in its
    place). ``encoder_weights``: ``None`` (random), or smp's name of pretrained weights (``imagenet``), downloaded
    when the network is built."""
    check_depth(depth)
    if spatial_dims != 2:
        raise ValueError(f"model.spatial_dims={spatial_dims}: smp's Unet is 2-D only; use model.spatial_dims=2")
    if isinstance(skips, str) and skips.strip().lower() == "all":
        skip_levels = tuple(range(1, depth))
    else:
        skip_levels = parse_skips(skips, depth)
        if 0 in skip_levels:
            raise ValueError(
                f"model.skips={list(skip_levels)}: smp's Unet has no skip at level 0 (its decoder drops the "
                f"full-resolution feature); its skips are levels {list(range(1, depth))}"
            )
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        raise ValueError(
            'model=smp_unet needs segmentation_models_pytorch (and torchvision): pip install "unetlab[smp]"'
        ) from None
    decoder_channels = [base_channels * 2**level for level in reversed(range(depth))]
    try:
        net = smp.Unet(encoder_name, encoder_depth=depth, encoder_weights=encoder_weights,
                       decoder_channels=decoder_channels, in_channels=in_channels, classes=num_classes)  # fmt: skip
    except ValueError as err:
        if "depth" not in str(err):
            raise
        raise ValueError(f"model.depth={depth}: smp's {encoder_name} encoder cannot be built so deep ({err})") from None
    for level in sorted(set(range(1, depth)) - set(skip_levels)):
        remove_skip(net, level)
    return SmpUnet(net)


def remove_skip(net: nn.Module, level: int) -> None:
    """Rebuild decoder level ``level``'s block of ``net`` without its skip (same input and output channels, same
    interpolation; smp's default norm and attention, as ``smp_unet`` builds it), initialised as smp initialises its
    decoder."""
    from segmentation_models_pytorch.base.initialization import initialize_decoder
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

    index = len(net.decoder.blocks) - 1 - level
    old = net.decoder.blocks[index]
    block = UnetDecoderBlock(old.conv1[0].in_channels - net.encoder.out_channels[level], 0,
                             old.conv2[0].out_channels, interpolation_mode=old.interpolation_mode)  # fmt: skip
    initialize_decoder(block)
    net.decoder.blocks[index] = block
