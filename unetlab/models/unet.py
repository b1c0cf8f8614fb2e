"""The U-Net: every level and every skip written out, depth a loop over channel widths.

Conventions (``docs/conventions.md``): level ``i`` has resolution ``H/2**i x W/2**i`` and ``base_channels * 2**i``
channels. A depth-``D`` U-Net has encoder levels ``0..D`` (``D`` is the bottleneck), decoder levels
``D-1..0``, and one skip per level ``0..D-1``; ``encoder[i]`` and ``decoder[i]`` are level ``i``. Feature keys:
``enc0..encD``, ``dec{D-1}..dec0``, ``logits``.

Blocks follow Ronneberger et al. (2015) with same-padding: two 3x3 conv-BN-ReLU per level, 2x2 max-pool
down, 2x2 stride-2 transposed conv up. A removed skip (``skips``) has no input channels in its decoder
block, so the parameter count drops; a kept skip can be ablated at test time with ``ablate_skips``.

Volumes (``spatial_dims=3``, Çiçek et al. 2016): the same network with 3x3x3 convolutions, 2x2x2 max-pooling and
2x2x2 transposed convolutions; level ``i`` is at ``D/2**i x H/2**i x W/2**i`` (pooling is isotropic in voxels,
whatever the voxel size: ``docs/models.md``).

``UNet`` implements the ``UNetLike`` protocol (``unetlab.models.protocol``), which is all that measurements use.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from unetlab.conventions import check_depth, level_of, parse_skips
from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import check_key, stage_of_blocks

# The layers of a 2D and of a 3D U-Net: convolution, batch norm, max-pool, transposed convolution.
LAYERS = {
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d),
}


def layers(spatial_dims: int) -> tuple[type[nn.Module], ...]:
    """``(Conv, BatchNorm, MaxPool, ConvTranspose)`` for 2 (images) or 3 (volumes) spatial dims."""
    if spatial_dims not in LAYERS:
        raise ValueError(f"model.spatial_dims={spatial_dims!r}: expected 2 (images) or 3 (volumes)")
    return LAYERS[spatial_dims]


class ConvBlock(nn.Module):
    """Two 3x3 (3x3x3) conv-BN-ReLU layers: (B, in_ch, *spatial) -> (B, out_ch, *spatial)."""

    def __init__(self, in_ch: int, out_ch: int, spatial_dims: int = 2):
        super().__init__()
        conv, norm, _, _ = layers(spatial_dims)
        self.layers = nn.Sequential(
            conv(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
            norm(out_ch),
            nn.ReLU(inplace=True),
            conv(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            norm(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class EncoderBlock(nn.Module):
    """Level ``i > 0`` of the encoder: 2x2 (2x2x2) max-pool, then a ConvBlock. (B, in_ch, 2h, 2w) -> (B, out_ch, h,
    w), and (B, in_ch, 2d, 2h, 2w) -> (B, out_ch, d, h, w) for volumes."""

    def __init__(self, in_ch: int, out_ch: int, spatial_dims: int = 2):
        super().__init__()
        self.down = layers(spatial_dims)[2](kernel_size=2, stride=2)
        self.conv = ConvBlock(in_ch, out_ch, spatial_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.down(x))


class DecoderBlock(nn.Module):
    """Decoder level ``i``: upsample level ``i+1``, concatenate the level-``i`` skip if kept, ConvBlock.

    x: (B, in_ch, h, w), skip: (B, skip_ch, 2h, 2w) or None -> (B, out_ch, 2h, 2w) (volumes: one more axis).
    A removed skip is ``skip_ch=0`` and ``skip=None``: the block has no weights for it.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, spatial_dims: int = 2):
        super().__init__()
        self.skip_ch = skip_ch
        self.up = layers(spatial_dims)[3](in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = ConvBlock(out_ch + skip_ch, out_ch, spatial_dims)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.up(x)  # (B, out_ch, 2h, 2w)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)  # (B, out_ch + skip_ch, 2h, 2w)
        return self.conv(x)


class UNet(MeasuredUNet):
    """U-Net of depth 1..6 with all, none or any subset of its skip connections.

    Args:
        in_channels: image channels C_in.
        num_classes: output classes K (logit channels).
        depth: number of down-samplings D; the bottleneck is level D at ``H/2**D``.
        base_channels: channels at level 0; level i has ``base_channels * 2**i``.
        skips: ``"all"``, ``"none"``, or the levels whose skip is kept (e.g. ``[0, 2]``).
        spatial_dims: 2 (images) or 3 (volumes).

    ``forward``: (B, C_in, H, W) -> logits (B, K, H, W); H and W must be multiples of ``2**depth``. Volumes:
    (B, C_in, D, H, W) -> (B, K, D, H, W), D, H and W multiples of ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 32,
        skips: str | Iterable[int] = "all",
        spatial_dims: int = 2,
    ):
        super().__init__()
        check_depth(depth)
        conv = layers(spatial_dims)[0]
        self.spatial_dims = spatial_dims
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}={value!r} must be a positive integer")
        self.depth = depth
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.skip_levels = parse_skips(skips, depth)
        widths = [base_channels * 2**level for level in range(depth + 1)]  # channels at levels 0..D
        self.widths = widths

        # Encoder levels 0..D (level D is the bottleneck).
        self.encoder = nn.ModuleList([ConvBlock(in_channels, widths[0], spatial_dims)])
        for level in range(1, depth + 1):
            self.encoder.append(EncoderBlock(widths[level - 1], widths[level], spatial_dims))

        # Decoder levels 0..D-1 (run from D-1 down to 0): decoder[i] takes level i+1 up to level i and, if kept,
        # the skip from encoder level i.
        self.decoder = nn.ModuleList(
            DecoderBlock(
                widths[level + 1], widths[level] if level in self.skip_levels else 0, widths[level], spatial_dims
            )
            for level in range(depth)
        )

        self.head = conv(widths[0], num_classes, kernel_size=1)

    # --- the UNetLike protocol (unetlab/models/protocol.py): what every measurement uses ---------------------------
    # spatial_dims: set in __init__, 2 or 3

    def channels(self, key: str) -> int:
        """Channels of feature ``key``: ``base_channels * 2**i`` at level i, ``num_classes`` for the logits."""
        check_key(self, key)
        return self.num_classes if key == "logits" else self.widths[level_of(key)]

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        """Encoder level ``level``: the image (level 0) or enc{level-1} -> enc{level}, (B, widths[level], H/2**level,
        W/2**level)."""
        return self.encoder[level](x)

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        """Decoder level ``level``: ``x`` (B, widths[level+1], h, w), the state of level ``level + 1``, and the skip
        (B, widths[level], 2h, 2w) or None -> (B, widths[level], 2h, 2w). The skip is concatenated after ``up``."""
        return self.decoder[level](x, skip)

    # head: the 1x1 conv made in __init__, dec0 (B, base, H, W) -> logits (B, K, H, W)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        """``(encoder[i],)`` for enc<i>; ``(decoder[i].up, decoder[i].conv)`` for dec<i>; ``(head,)`` for logits."""
        return stage_of_blocks(self, key, self.encoder, self.decoder, self.head, ("up", "conv"))
