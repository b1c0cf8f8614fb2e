"""The check every adapter's tests share: a test-time skip ablation equals the library network with the skip its own
module receives replaced (found by a hook on that module), at the given level and mode."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from unetlab.models.skip_ablation import ablate_skip

# install(replace, received) -> a hook handle: the hook records the skip the library's module receives as
# received["skip"] and hands the module replace(skip) instead.
Install = Callable[[Callable[[Tensor], Tensor], dict], torch.utils.hooks.RemovableHandle]


def check_skip_ablation(net: nn.Module, u, x: Tensor, level: int, mode: str, install: Install) -> None:
    """``u.ablate_skips({level: mode})(x)`` equals ``net(x)`` with the hooked skip ablated; the hooked tensor is
    ``enc{level}``; the ablation changes the output."""
    received: dict = {}
    handle = install(lambda skip: ablate_skip(skip, mode), received)
    try:
        with torch.no_grad():
            expected = net(x)
    finally:
        handle.remove()
    with torch.no_grad(), u.ablate_skips({level: mode}):
        ablated = u(x)
        encoded = u.encode(x)
    assert torch.equal(received["skip"], encoded[level])  # the hooked tensor is enc{level}
    assert torch.equal(ablated, expected)
    with torch.no_grad():
        assert not torch.equal(ablated, net(x))  # the ablation does change the output
