"""``MeasuredUNet``: the conveniences every ``UNetLike`` model gets from its protocol members: ``forward``,
``features``, ``feature_keys`` and the test-time skip ablation ``ablate_skips``. Our ``UNet`` and the adapters of other
libraries' U-Nets (``unetlab/models/adapters/``) inherit them, so they behave the same."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

from torch import Tensor, nn

from unetlab.models import protocol
from unetlab.models.protocol import SkipTransform
from unetlab.models.skip_ablation import ablation_transform, check_ablation


class MeasuredUNet(nn.Module):
    """A ``UNetLike`` module (its subclass defines the protocol's members) with forward, features and
    ``ablate_skips``."""

    def __init__(self) -> None:
        super().__init__()
        self._ablated_skips: dict[int, str] = {}  # {level: mode} inside ablate_skips

    @property
    def feature_keys(self) -> list[str]:
        """Feature keys in forward order: enc0..encD, dec{D-1}..dec0, logits."""
        return protocol.feature_keys(self)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder features [enc0, ..., encD]."""
        return protocol.encode(self, x)

    def decode(self, encoded: Sequence[Tensor], skip_transform: SkipTransform | None = None) -> dict[str, Tensor]:
        """Decoder states and logits; ``skip_transform(level, skip)`` may change each skip (default: the ablation of
        ``ablate_skips``, inside its block). Returns {"dec{D-1}": ..., ..., "dec0": ..., "logits": ...}."""
        if skip_transform is None and self._ablated_skips:
            skip_transform = ablation_transform(self._ablated_skips)
        return protocol.decode(self, encoded, skip_transform)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, *spatial) -> logits (B, K, *spatial)."""
        return self.decode(self.encode(x))["logits"]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Every feature map, in order: enc0..encD, dec{D-1}..dec0, logits."""
        encoded = self.encode(x)
        return protocol.feature_maps(encoded, self.decode(encoded))

    @contextlib.contextmanager
    def ablate_skips(self, ablation: Mapping[int, str]) -> Iterator[MeasuredUNet]:
        """Test-time ablation of skips inside a ``with`` block (eval mode only); restored on exit. ``ablation`` maps a
        level to ``"zero"``, ``"mean"`` or ``"lowpass:k"``; only what the decoder receives from that encoder level
        changes, never the encoder path itself."""
        if self.training:
            raise RuntimeError("ablate_skips is a test-time ablation: call net.eval() first")
        checked = check_ablation(self, ablation)
        previous = self._ablated_skips
        self._ablated_skips = {**previous, **checked}
        try:
            yield self
        finally:
            self._ablated_skips = previous
