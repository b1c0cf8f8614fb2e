"""The U-Net: every level and every skip written out, depth a loop over channel widths.

Conventions (SPEC section 2): level ``i`` has resolution ``H/2**i x W/2**i`` and ``base_channels * 2**i``
channels. A depth-``D`` U-Net has encoder levels ``0..D`` (``D`` is the bottleneck), decoder levels
``D-1..0``, and one skip per level ``0..D-1``. Feature keys: ``enc0..encD``, ``dec{D-1}..dec0``, ``logits``.

Blocks follow Ronneberger et al. (2015) with same-padding: two 3x3 conv-BN-ReLU per level, 2x2 max-pool
down, 2x2 stride-2 transposed conv up. A removed skip (``skips``) has no input channels in its decoder
block, so the parameter count drops; a kept skip can be ablated at test time with ``ablate_skips``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_DEPTH, MAX_DEPTH = 1, 6
ABLATION_MODES = ("zero", "mean", "lowpass:k")


def check_depth(depth: int) -> int:
    """Raise a clear error unless ``depth`` is an integer in 1..6."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"model.depth={depth!r} is not allowed; use an integer {MIN_DEPTH}..{MAX_DEPTH}")
    return depth


def parse_skips(skips: str | Iterable[int] | None, depth: int) -> tuple[int, ...]:
    """Turn ``"all" | "none" | [0, 2] | "0,2"`` into the sorted tuple of kept skip levels."""
    if skips is None or (isinstance(skips, str) and skips.strip().lower() == "none"):
        return ()
    if isinstance(skips, str):
        text = skips.strip().lower()
        if text == "all":
            return tuple(range(depth))
        try:
            skips = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"model.skips={skips!r} is not understood; use 'all', 'none' or a list of levels like [0, 2]"
            ) from None
    entries = list(skips) if isinstance(skips, Iterable) else [skips]  # model.skips=2 is level 2 alone, as "2" is
    # int() would fail on 'x' with a bare "invalid literal", and quietly take 1.5 or True for level 1.
    whole = [e for e in entries if (isinstance(e, int) and not isinstance(e, bool)) or str(e).strip().isdecimal()]
    if len(whole) < len(entries):
        raise ValueError(
            f"model.skips={entries!r} is not understood: levels must be integers 0..{depth - 1}; "
            "use 'all', 'none' or a list of levels like [0, 2]"
        )
    levels = sorted({int(level) for level in entries})
    bad = [level for level in levels if not 0 <= level < depth]
    if bad:
        raise ValueError(
            f"model.skips={levels} names level {bad[0]}, but a depth-{depth} U-Net has skips at levels 0..{depth - 1}"
        )
    return tuple(levels)


def feature_keys(depth: int) -> list[str]:
    """The feature keys of a depth-``depth`` U-Net in forward order: enc0..enc{depth}, dec{depth-1}..dec0, logits."""
    enc = [f"enc{level}" for level in range(depth + 1)]
    dec = [f"dec{level}" for level in reversed(range(depth))]
    return [*enc, *dec, "logits"]


def skips_to_str(skips: Sequence[int]) -> str:
    """Canonical skip-set string used in tables: ``"0,1,2"`` or ``"none"``."""
    return ",".join(str(level) for level in sorted(skips)) if skips else "none"


def parse_ablation_mode(mode: str) -> tuple[str, int]:
    """``"zero" | "mean" | "lowpass:k"`` -> (kind, k); k is 0 unless kind is lowpass."""
    if mode in ("zero", "mean"):
        return mode, 0
    if isinstance(mode, str) and mode.startswith("lowpass:"):
        try:
            k = int(mode.split(":", 1)[1])
        except ValueError:
            k = -1
        if k >= 1:
            return "lowpass", k
    raise ValueError(f"unknown skip ablation mode {mode!r}; allowed: zero, mean, lowpass:k with an integer k >= 1")


def ablate(skip: Tensor, mode: str) -> Tensor:
    """Test-time ablation of one skip tensor (B, C, h, w) -> (B, C, h, w) (SPEC section 5).

    ``zero``: all zeros. ``mean``: each channel's spatial mean (statistics kept, location removed).
    ``lowpass:k``: average-pooled by ``2**k`` and bilinearly upsampled (detail finer than ``2**k`` px removed).
    """
    kind, k = parse_ablation_mode(mode)
    if kind == "zero":
        return torch.zeros_like(skip)
    if kind == "mean":
        return skip.mean(dim=(2, 3), keepdim=True).expand_as(skip)
    size = skip.shape[-2:]
    factor = 2**k
    if min(size) < factor:
        raise ValueError(f"lowpass:{k} pools by {factor} px but this skip is only {tuple(size)} px")
    pooled = F.avg_pool2d(skip, kernel_size=factor, stride=factor)
    return F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)


class ConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers: (B, in_ch, h, w) -> (B, out_ch, h, w)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class EncoderBlock(nn.Module):
    """Level ``i > 0`` of the encoder: 2x2 max-pool, then a ConvBlock. (B, in_ch, 2h, 2w) -> (B, out_ch, h, w)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.down = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv = ConvBlock(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.down(x))


class DecoderBlock(nn.Module):
    """Decoder level ``i``: upsample level ``i+1``, concatenate the level-``i`` skip if kept, ConvBlock.

    x: (B, in_ch, h, w), skip: (B, skip_ch, 2h, 2w) or None -> (B, out_ch, 2h, 2w).
    A removed skip is ``skip_ch=0`` and ``skip=None``: the block has no weights for it.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.skip_ch = skip_ch
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = ConvBlock(out_ch + skip_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.up(x)  # (B, out_ch, 2h, 2w)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)  # (B, out_ch + skip_ch, 2h, 2w)
        return self.conv(x)


class UNet(nn.Module):
    """U-Net of depth 1..6 with all, none or any subset of its skip connections.

    Args:
        in_channels: image channels C_in.
        num_classes: output classes K (logit channels).
        depth: number of down-samplings D; the bottleneck is level D at ``H/2**D``.
        base_channels: channels at level 0; level i has ``base_channels * 2**i``.
        skips: ``"all"``, ``"none"``, or the levels whose skip is kept (e.g. ``[0, 2]``).

    ``forward``: (B, C_in, H, W) -> logits (B, K, H, W); H and W must be multiples of ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 32,
        skips: str | Iterable[int] = "all",
    ):
        super().__init__()
        check_depth(depth)
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
        self.encoder = nn.ModuleList([ConvBlock(in_channels, widths[0])])
        for level in range(1, depth + 1):
            self.encoder.append(EncoderBlock(widths[level - 1], widths[level]))

        # Decoder levels D-1..0; decoder[j] is level depth-1-j. Its skip comes from encoder level j.
        self.decoder = nn.ModuleList()
        for level in reversed(range(depth)):
            skip_ch = widths[level] if level in self.skip_levels else 0
            self.decoder.append(DecoderBlock(widths[level + 1], skip_ch, widths[level]))

        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self._ablation: dict[int, str] = {}

    @property
    def feature_keys(self) -> list[str]:
        """Feature keys in forward order: enc0..encD, dec{D-1}..dec0, logits."""
        return feature_keys(self.depth)

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error for inputs the U-Net cannot take."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects (B, {self.in_channels}, H, W) input, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        factor = 2**self.depth
        if height % factor or width % factor:
            raise ValueError(
                f"input size {height}x{width} is not a multiple of 2**depth = {factor} (depth {self.depth}); "
                f"resize or crop to a multiple of {factor}"
            )

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder features [enc0, ..., encD]; enc_i is (B, base*2**i, H/2**i, W/2**i)."""
        self.check_input(x)
        features = []
        for block in self.encoder:
            x = block(x)
            features.append(x)
        return features

    def decode(self, encoded: Sequence[Tensor], ablation: Mapping[int, str] | None = None) -> dict[str, Tensor]:
        """Decoder features and logits from encoder features; ``ablation`` maps kept skip levels to modes.

        Returns {"dec{D-1}": ..., ..., "dec0": (B, base, H, W), "logits": (B, K, H, W)}.
        """
        ablation = self._ablation if ablation is None else ablation
        x = encoded[self.depth]
        out: dict[str, Tensor] = {}
        for block, level in zip(self.decoder, reversed(range(self.depth))):
            skip = None
            if level in self.skip_levels:
                skip = encoded[level]
                if level in ablation:
                    skip = ablate(skip, ablation[level])
            x = block(x, skip)
            out[f"dec{level}"] = x
        out["logits"] = self.head(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> logits (B, K, H, W)."""
        return self.decode(self.encode(x))["logits"]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Every feature map, in order: enc0..encD, dec{D-1}..dec0, logits."""
        encoded = self.encode(x)
        out = {f"enc{level}": feature for level, feature in enumerate(encoded)}
        out.update(self.decode(encoded))
        return out

    def check_ablation(self, ablation: Mapping[int, str]) -> dict[int, str]:
        """Validate {level: mode} against this model's kept skips and the allowed modes."""
        checked = {}
        for level, mode in ablation.items():
            level = int(level)
            if level not in self.skip_levels:
                kept = skips_to_str(self.skip_levels)
                raise ValueError(f"cannot ablate the skip at level {level}: this U-Net keeps skips at levels {kept}")
            parse_ablation_mode(mode)
            checked[level] = mode
        return checked

    @contextlib.contextmanager
    def ablate_skips(self, ablation: Mapping[int, str]) -> Iterator[UNet]:
        """Test-time ablation of kept skips inside a ``with`` block (eval mode only); restored on exit.

        ``ablation`` maps a level to ``"zero"``, ``"mean"`` or ``"lowpass:k"`` (see ``ablate``).
        """
        if self.training:
            raise RuntimeError("ablate_skips is a test-time ablation: call net.eval() first")
        checked = self.check_ablation(ablation)
        previous = self._ablation
        self._ablation = {**previous, **checked}
        try:
            yield self
        finally:
            self._ablation = previous
