"""``BlockUNet``: a U-Net given as its library's blocks (the encoder levels, the decoder blocks called with the skip,
the head), behind the ``UNetLike`` protocol. An adapter of a library U-Net only says which modules are which
(``docs/models.md``); a skip removed at training time is fed zeros of the skip's shape when the library's block cannot
be built without it."""

from __future__ import annotations

from torch import Tensor, nn

from unetlab.models.measured import MeasuredUNet
from unetlab.models.protocol import check_key, stage_of_blocks

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class BlockUNet(MeasuredUNet):
    """A U-Net given as its blocks: ``encoder[i]`` computes level ``i`` (from the image at 0, from level ``i-1``
    after), ``decoder[i]`` is called ``decoder[i](state of level i+1, skip)`` and returns level ``i``'s decoder
    state, ``head`` maps ``dec0`` to the logits; ``up`` and ``merge`` name the parts of a decoder block that run before
    and after its skip joins (for the theoretical fields). The protocol's members follow from these; an adapter only
    says which of the library's modules are which.

    ``skip_levels``: the levels whose skip the model has (default: every level 0..D-1). The library's blocks still
    expect a tensor at a removed level, so they are handed zeros of the skip's shape there (a constant carries no
    information; the weights that read it stay in the parameter count and never learn)."""

    def __init__(
        self,
        net: nn.Module,
        encoder: list[nn.Module],
        decoder: list[nn.Module],
        head: nn.Module,
        up: str,
        merge: str,
        skip_levels: tuple[int, ...] | None = None,
    ):
        super().__init__()
        check_blocks(encoder, decoder, head, up, merge)
        self.net = net  # registers the library's modules once, under their own names
        # Plain lists and a tuple: the modules are registered once, under the library's names (self.net).
        self._encoder, self._decoder, self._head, self._parts = list(encoder), list(decoder), (head,), (up, merge)
        self.depth = len(encoder) - 1
        self.skip_levels = tuple(range(self.depth)) if skip_levels is None else tuple(sorted(skip_levels))
        if not set(self.skip_levels) <= set(range(self.depth)):
            raise ValueError(f"skip levels {list(self.skip_levels)} outside 0..{self.depth - 1} (depth {self.depth})")
        first = next(m for m in encoder[0].modules() if isinstance(m, CONVS))
        self.in_channels, self.spatial_dims = first.in_channels, len(first.kernel_size)
        self.num_classes = [m for m in head.modules() if isinstance(m, CONVS)][-1].out_channels
        self._skip_channels = [self.channels(f"enc{level}") for level in range(self.depth)]
        self.train(net.training)  # the wrapper starts in the network's own mode

    def channels(self, key: str) -> int:
        check_key(self, key)
        convs = [m for block in BlockUNet.stage(self, key) for m in block.modules() if isinstance(m, CONVS)]
        return convs[-1].out_channels

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        return self._encoder[level](x)

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        if skip is None:  # a skip removed at training time: zeros where the library's block expects enc{level}
            skip = zero_skip(x, self._skip_channels[level])
        return self._decoder[level](x, skip)

    def head(self, x: Tensor) -> Tensor:
        return self._head[0](x)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        return stage_of_blocks(self, key, self._encoder, self._decoder, self._head[0], self._parts)


def zero_skip(x: Tensor, channels: int) -> Tensor:
    """Zeros in place of a removed skip at the level above ``x``: ``(B, channels, *2 * spatial of x)``."""
    return x.new_zeros((x.shape[0], channels, *(2 * side for side in x.shape[2:])))


def check_blocks(encoder: list, decoder: list, head, up: str, merge: str) -> None:
    """ValueError in one line when the blocks an adapter names are not what ``BlockUNet`` needs: modules, one decoder
    block per level below the bottleneck, each with the ``up`` and ``merge`` parts, a first encoder block and a head
    with a convolution."""
    named = {"encoder": list(encoder), "decoder": list(decoder), "head": [head]}
    for what, blocks in named.items():
        for i, block in enumerate(blocks):
            if not isinstance(block, nn.Module):
                raise ValueError(f"BlockUNet: {what}[{i}] is a {type(block).__name__}, not a module")
    if len(encoder) < 2 or len(decoder) != len(encoder) - 1:
        need = max(len(encoder) - 1, 1)
        raise ValueError(
            f"BlockUNet: {len(encoder)} encoder blocks need {need} decoder blocks, got {len(decoder)} (one decoder "
            "block per level below the bottleneck, at least one)"
        )
    for i, block in enumerate(decoder):
        missing = [part for part in (up, merge) if not isinstance(getattr(block, part, None), nn.Module)]
        if missing:
            children = ", ".join(name for name, _ in block.named_children())
            raise ValueError(
                f"BlockUNet: decoder[{i}] ({type(block).__name__}) has no module {missing[0]!r}; up and merge name its "
                f"parts that run before and after the skip joins (it has {children})"
            )
    for what, module in (("encoder[0]", encoder[0]), ("head", head)):
        if not any(isinstance(m, CONVS) for m in module.modules()):
            raise ValueError(f"BlockUNet: {what} ({type(module).__name__}) has no convolution to read channels from")
