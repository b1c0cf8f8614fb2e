import pytest
import torch

from unetlab import UNet
from unetlab.conventions import parse_skips, skips_to_str
from unetlab.models.skip_ablation import ablate_skip


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("skips", ["all", "none", [0]])
def test_output_and_feature_shapes(depth, skips):
    net = UNet(in_channels=3, num_classes=4, depth=depth, base_channels=2, skips=skips)
    x = torch.randn(2, 3, 64, 128)
    feats = net.features(x)
    expected = [f"enc{i}" for i in range(depth + 1)] + [f"dec{i}" for i in reversed(range(depth))] + ["logits"]
    assert list(feats) == expected == net.feature_keys
    for level in range(depth + 1):
        assert feats[f"enc{level}"].shape == (2, 2 * 2**level, 64 // 2**level, 128 // 2**level)
    for level in range(depth):
        assert feats[f"dec{level}"].shape == (2, 2 * 2**level, 64 // 2**level, 128 // 2**level)
    assert feats["logits"].shape == (2, 4, 64, 128)
    torch.testing.assert_close(net(x), feats["logits"])


def test_removing_skips_drops_exactly_their_input_channels():
    full = UNet(1, 2, depth=3, base_channels=4, skips="all")
    for level in range(3):
        kept = [lv for lv in range(3) if lv != level]
        partial = UNet(1, 2, depth=3, base_channels=4, skips=kept)
        width = 4 * 2**level
        # the first 3x3 conv of decoder level `level` loses `width` input channels of `width` filters
        assert n_params(full) - n_params(partial) == width * width * 9
    assert n_params(UNet(1, 2, depth=3, base_channels=4, skips="none")) < n_params(UNet(1, 2, 3, 4, [1]))


def test_skip_set_parsing_and_errors():
    assert parse_skips("all", 3) == (0, 1, 2)
    assert parse_skips("none", 3) == ()
    assert parse_skips([2, 0, 2], 3) == (0, 2)
    assert parse_skips("0,2", 3) == (0, 2)
    assert skips_to_str((2, 0)) == "0,2" and skips_to_str(()) == "none"
    with pytest.raises(
        ValueError, match=r"model.skips=\[5\] names level 5, but a depth-3 U-Net has skips at levels 0..2"
    ):
        UNet(1, 2, depth=3, skips=[5])
    for depth in (0, 7):
        with pytest.raises(ValueError, match=rf"model.depth={depth} .*1..6"):
            UNet(1, 2, depth=depth)


def test_input_size_must_fit_depth():
    net = UNet(1, 2, depth=3, base_channels=2)
    with pytest.raises(ValueError, match=r"input size 60x64 is not a multiple of 2\*\*depth = 8 \(depth 3\)"):
        net(torch.randn(1, 1, 60, 64))


def test_ablate_skips_changes_only_through_that_level_and_restores():
    torch.manual_seed(0)
    net = UNet(1, 2, depth=3, base_channels=4, skips="all").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = net.features(x)
        with net.ablate_skips({1: "mean"}):
            during = net.features(x)
        after = net.features(x)
    # Decoder level 2 comes before the level-1 skip is used: unchanged. Level 1 and below change.
    torch.testing.assert_close(during["dec2"], before["dec2"])
    assert not torch.allclose(during["dec1"], before["dec1"])
    assert not torch.allclose(during["logits"], before["logits"])
    for key in before:
        torch.testing.assert_close(after[key], before[key])
    # Same result as running the decoder on hand-ablated encoder features.
    encoded = net.encode(x)
    manual = list(encoded)
    manual[1] = encoded[1].mean(dim=(2, 3), keepdim=True).expand_as(encoded[1])
    with torch.no_grad():
        by_hand = net.decoder[0](net.decoder[1](net.decoder[2](encoded[3], encoded[2]), manual[1]), encoded[0])
    torch.testing.assert_close(during["dec0"], by_hand)


def test_ablate_skips_restores_on_exception_and_checks_input():
    net = UNet(1, 2, depth=2, base_channels=2, skips=[0]).eval()
    with pytest.raises(KeyError):
        with net.ablate_skips({0: "zero"}):
            raise KeyError("boom")
    assert net._ablated_skips == {}
    with pytest.raises(ValueError, match="keeps skips at levels 0"):
        with net.ablate_skips({1: "zero"}):
            pass
    with pytest.raises(ValueError, match="unknown skip ablation mode 'blur'.*zero, mean, lowpass:k"):
        with net.ablate_skips({0: "blur"}):
            pass
    with pytest.raises(RuntimeError, match="eval"):
        with net.train().ablate_skips({0: "zero"}):
            pass


def test_ablation_modes():
    torch.manual_seed(0)
    skip = torch.randn(2, 3, 16, 16)
    assert torch.count_nonzero(ablate_skip(skip, "zero")) == 0
    mean = ablate_skip(skip, "mean")
    torch.testing.assert_close(mean[:, :, 5, 7], skip.mean(dim=(2, 3)))
    low = ablate_skip(skip, "lowpass:2")
    # a 4x4 average pool then bilinear up keeps each block's mean but removes detail finer than 4 px
    torch.testing.assert_close(low.mean(dim=(2, 3)), skip.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    assert low.var() < skip.var()
    constant = torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(ablate_skip(constant, "lowpass:1"), constant)


# --- volumes (spatial_dims=3) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("skips", ["all", "none", [1]])
def test_3d_unet_levels_halve_every_axis_and_skips_change_the_weights(skips):
    net = UNet(in_channels=2, num_classes=3, depth=2, base_channels=4, skips=skips, spatial_dims=3)
    x = torch.randn(1, 2, 8, 16, 12)
    feats = net.features(x)
    for level in range(3):
        assert feats[f"enc{level}"].shape == (1, 4 * 2**level, 8 >> level, 16 >> level, 12 >> level)
    assert feats["logits"].shape == (1, 3, 8, 16, 12)
    assert isinstance(net.head, torch.nn.Conv3d) and isinstance(net.encoder[1].down, torch.nn.MaxPool3d)
    full = UNet(in_channels=2, num_classes=3, depth=2, base_channels=4, skips="all", spatial_dims=3)
    # each removed skip takes its channels out of the first 3x3x3 conv of its decoder block
    per_level = {level: 4 * 2**level * 4 * 2**level * 27 for level in range(2)}
    expected = sum(per_level[level] for level in range(2) if level not in net.skip_levels)
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in net.parameters()) == expected


def test_3d_skip_ablation_changes_only_that_skip():
    net = UNet(in_channels=1, num_classes=2, depth=2, base_channels=4, spatial_dims=3).eval()
    x = torch.randn(2, 1, 8, 8, 8)
    seen = {}
    hook = net.decoder[1].conv.register_forward_pre_hook(lambda module, args: seen.update(input=args[0]))
    with torch.no_grad(), net.ablate_skips({1: "lowpass:1"}):
        net(x)
    hook.remove()
    skip = seen["input"][:, 8:]  # after the 8 upsampled channels: the level-1 skip, pooled by 2 and upsampled
    enc1 = net.features(x)["enc1"]
    assert torch.allclose(skip, ablate_skip(enc1, "lowpass:1"))
    assert torch.allclose(ablate_skip(enc1, "mean"), enc1.mean(dim=(2, 3, 4), keepdim=True).expand_as(enc1))
    with pytest.raises(ValueError, match=r"expects \(B, 1, D, H, W\) input"):
        net(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="model.spatial_dims=4"):
        UNet(spatial_dims=4)
