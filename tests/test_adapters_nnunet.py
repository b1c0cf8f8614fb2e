"""nnU-Net's U-Nets behind the protocol (``unetlab.models.adapters.nnunet_nets``): PlainConvUNet and
ResidualEncoderUNet. The adapter must compute exactly what the library computes, and a skip ablation must change
exactly the skip half of the concatenation that the library's decoder stage receives (found by hooking the library's
own module), at every level and in every mode."""

from __future__ import annotations

import sys

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from tests.adapter_checks import check_skip_ablation
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import evaluate
from unetlab.evaluation.options import EvalOptions
from unetlab.models import protocol
from unetlab.models.adapters import adapt
from unetlab.models.adapters.nnunet_nets import nnunet_plainconv, nnunet_resenc
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import field_functions, unit_field
from unetlab.runs.checkpoint import LoadedRun

unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")

FEATURES = (4, 8, 16, 32)  # depth 3
MODES = ("zero", "mean", "lowpass:1")
NORMS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}


def plain_conv_unet(norm: str = "instance", classes: int = 2, strides=(1, 2, 2, 2), **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return unet.PlainConvUNet(1, 4, FEATURES, nn.Conv2d, 3, list(strides), 2, classes, 2, conv_bias=True,
                              norm_op=NORMS[norm], norm_op_kwargs={"affine": True}, nonlin=nn.LeakyReLU,
                              nonlin_kwargs={"inplace": True}, **kwargs).eval()  # fmt: skip


def residual_encoder_unet(norm: str = "instance", classes: int = 2, strides=(1, 2, 2, 2)) -> nn.Module:
    torch.manual_seed(0)
    return unet.ResidualEncoderUNet(1, 4, FEATURES, nn.Conv2d, 3, list(strides), [1, 2, 2, 2], classes, 1,
                                    conv_bias=True, norm_op=NORMS[norm], norm_op_kwargs={"affine": True},
                                    nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}).eval()  # fmt: skip


LIBRARY_UNETS = {"plain_conv": plain_conv_unet, "residual_encoder": residual_encoder_unet}


def replace_skip_half(net: nn.Module, level: int, replace, received: dict | None = None):
    """A forward pre-hook on the library's decoder stage of ``level`` (``decoder.stages[D-1-level]``), whose input is
    ``torch.cat((up, skip), 1)``: the skip half (the last ``C`` channels, ``C`` = the level's encoder channels) goes
    through ``replace``, the up-sampled half is kept; the received skip is stored in ``received["skip"]``."""
    channels = net.encoder.output_channels[level]
    stage = net.decoder.stages[len(net.decoder.stages) - 1 - level]

    def hook(module, args):
        (joined,) = args
        up, skip = joined[:, :-channels], joined[:, -channels:]
        assert up.shape[1] == channels  # the two halves: up-sampled state, encoder skip
        if received is not None:
            received["skip"] = skip
        return (torch.cat((up, replace(skip)), 1),)

    return stage.register_forward_pre_hook(hook)


@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_the_adapter_computes_what_the_library_computes(library):
    net = LIBRARY_UNETS[library](classes=3)
    u = adapt(net)
    assert isinstance(u, UNetLike) and (u.depth, u.skip_levels) == (3, (0, 1, 2))
    assert (u.in_channels, u.num_classes, u.spatial_dims) == (1, 3, 2)
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        features = u.features(x)
        library_skips = net.encoder(x)  # the library's own encoder outputs, one per stage
    assert list(features) == u.feature_keys
    for level in range(4):  # encoder stage i is level i, at H/2**i
        assert tuple(features[f"enc{level}"].shape) == (2, FEATURES[level], 32 >> level, 48 >> level)
        assert torch.equal(features[f"enc{level}"], library_skips[level])
    for level in range(3):
        assert tuple(features[f"dec{level}"].shape) == (2, FEATURES[level], 32 >> level, 48 >> level)
    assert tuple(features["logits"].shape) == (2, 3, 32, 48)
    assert [u.channels(key) for key in u.feature_keys] == [features[key].shape[1] for key in u.feature_keys]


def test_with_deep_supervision_the_logits_are_the_full_resolution_output():
    net = plain_conv_unet(deep_supervision=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        outputs = net(x)
        assert [tuple(o.shape[2:]) for o in outputs] == [(32, 32), (16, 16), (8, 8)]
        assert torch.equal(adapt(net)(x), outputs[0])


@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_levels_need_a_first_stride_of_1_and_2_after_it(library):
    strided = LIBRARY_UNETS[library](strides=(2, 2, 2, 2))
    name = type(strided).__name__
    with pytest.raises(ValueError, match=rf"{name} strides \[\[2, 2\], \[2, 2\], \[2, 2\], \[2, 2\]\]: the adapter"):
        adapt(strided)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_a_skip_ablation_changes_only_the_skip_half_of_the_concatenation(library, level, mode):
    """``ablate_skips({level: mode})`` equals the library network with the skip half of its decoder stage's input
    (the encoder tensor ``UNetDecoder`` concatenates after the up-sampled one) replaced by its ablation."""
    net = LIBRARY_UNETS[library]()
    u = adapt(net)
    x = torch.randn(2, 1, 32, 32)
    check_skip_ablation(
        net, u, x, level, mode, lambda replace, received: replace_skip_half(net, level, replace, received)
    )


@pytest.mark.parametrize("factory", [nnunet_plainconv, nnunet_resenc])
def test_a_skip_removed_at_training_time_is_fed_zeros(factory):
    """The decoder cannot be built without its skip: a removed skip is zeros of the skip's shape, so the model
    equals the library network run with that skip half zeroed, and the level cannot be ablated."""
    torch.manual_seed(0)
    u = factory(1, 2, depth=3, base_channels=4, skips=[1]).eval()
    assert u.skip_levels == (1,)
    x = torch.randn(2, 1, 32, 32)
    hooks = [replace_skip_half(u.net, level, torch.zeros_like) for level in (0, 2)]
    with torch.no_grad():
        zeroed = u.net(x)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        assert torch.equal(u(x), zeroed) and not torch.equal(u(x), u.net(x))
    with pytest.raises(ValueError, match="keeps skips at levels 1"), u.ablate_skips({0: "zero"}):
        pass


@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_a_saved_adapter_loads_back(library):
    """The adapter's weights are the library network's under ``net.``: a saved state dict loads into a fresh
    adapter of another initialisation, which then computes the same."""
    u = adapt(LIBRARY_UNETS[library]())
    state = u.state_dict()
    assert {f"net.{key}" for key in u.net.state_dict()} <= set(state)
    torch.manual_seed(1)
    fresh = adapt(LIBRARY_UNETS[library]()).eval()
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.add_(1.0)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(fresh(x), u(x))
        fresh.load_state_dict(state)
        assert torch.equal(fresh(x), u(x))


def test_an_adapted_nnunet_is_evaluated_whole(tmp_path):
    """Model, probes, floors, ablations of every subset and Shapley values that sum to v(all) - v(none), image by
    image, on nnU-Net's PlainConvUNet through the protocol alone."""
    datamodule = ShapesDataModule(image_size=32, train_size=8, val_size=4, test_size=6, batch_size=4)
    datamodule.setup("test")
    u = adapt(plain_conv_unet())
    run = LoadedRun(OmegaConf.create({"seed": 0}), u, datamodule, tmp_path / "run")
    options = EvalOptions(probe_steps=2, probe_images=8, ablate_modes=["zero"], objects=False, progress=False)
    rows, per_image = evaluate(run, options)
    sources = {row["source"] for row in rows}
    assert {"model", "probe/enc3", "probe/dec0", "floor/3", "ablate/zero/0,1,2", "shapley/zero/0"} <= sources
    total = sum(per_image[f"shapley/zero/{level}"] for level in range(3))
    assert torch.allclose(total, per_image["model"] - per_image["ablate/zero/0,1,2"], atol=1e-9)


def test_fields_of_a_batch_norm_plain_conv_unet_bound_its_gradients():
    """With BatchNorm (element-wise at test time) the theoretical fields come from the library's modules, and bound
    a unit's input gradient; nnU-Net's instance norm reads the whole image, so its fields are refused, naming the
    layer; residual blocks are refused too (their shortcut is a second path)."""
    u = adapt(plain_conv_unet(norm="batch"))
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    for key, (y, x_) in {"enc2": (8, 8), "dec0": (30, 33)}.items():
        x.grad = None
        protocol.features(u, x)[key][0, :, y, x_].sum().backward()
        y0, y1, x0, x1 = unit_field(u, key, y, x_)
        touched = x.grad[0, 0].abs() > 0
        inside = torch.zeros_like(touched)
        inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
        assert touched.any() and not (touched & ~inside).any()
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        field_functions(adapt(plain_conv_unet()), 0)  # unit_field measures it instead
    residual = adapt(residual_encoder_unet(norm="batch"))
    assert [residual.channels(key) for key in residual.feature_keys][:4] == list(FEATURES)
    with pytest.raises(TypeError, match="residual blocks"):
        field_functions(residual, 0)  # unit_field measures it instead


def test_the_factories_build_nnunets_of_our_depth_and_channels():
    torch.manual_seed(0)
    plain = nnunet_plainconv(3, 4, depth=2, base_channels=8)
    assert type(plain.net).__name__ == "PlainConvUNet" and not plain.net.decoder.deep_supervision
    assert [plain.channels(f"enc{level}") for level in range(3)] == [8, 16, 32]
    assert (plain.in_channels, plain.num_classes, plain.skip_levels) == (3, 4, (0, 1))
    assert isinstance(plain.net.encoder.stages[0][0].convs[0].norm, nn.BatchNorm2d)
    instance = nnunet_resenc(1, 2, depth=4, base_channels=2, norm="instance")
    assert type(instance.net).__name__ == "ResidualEncoderUNet"
    assert [len(stage.blocks) for stage in instance.net.encoder.stages] == [1, 3, 4, 6, 6]
    assert isinstance(instance.net.encoder.stem.convs[0].norm, nn.InstanceNorm2d)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"depth": 0}, "model.depth=0"), ({"base_channels": 0}, "model.base_channels=0"),
     ({"norm": "group"}, "model.norm='group'"), ({"spatial_dims": 1}, "model.spatial_dims=1"),
     ({"skips": [3]}, r"model.skips=\[3\]")],
)  # fmt: skip
def test_an_impossible_model_value_is_one_line_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nnunet_plainconv(1, 2, **{"depth": 2, **kwargs})


def test_the_factories_say_how_to_install_the_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "dynamic_network_architectures.architectures", None)  # the import fails
    with pytest.raises(ValueError, match=r'model=nnunet_resenc needs nnU-Net\'s architectures: pip install "unetlab'):
        nnunet_resenc(1, 2)


def test_model_nnunet_plainconv_trains_and_is_evaluated_from_its_run_dir(tmp_path):
    """``model=nnunet_plainconv``: trained by Lightning like our U-Net (``experiment=tiny``: depth 2), then evaluated
    from its checkpoint (the run loaded back by its config) to a full results table; ``model=nnunet_resenc``'s config
    builds its adapter."""
    from tests.helpers import compose_train
    from unetlab.grid.job import train_then_evaluate
    from unetlab.runs.checkpoint import load_run
    from unetlab.runs.results import read_results

    run_dir = tmp_path / "run"
    model = ["model=nnunet_plainconv", "model.base_channels=4"]
    cfg = compose_train(run_dir, *model, "+eval.probe_steps=2", "+eval.ablate_modes=[zero]", "+eval.progress=false")
    train_then_evaluate(cfg)
    sources = {row["source"] for row in read_results(run_dir / "results.csv")}
    assert {"model", "probe/enc2", "floor/2", "ablate/zero/0,1", "shapley/zero/1", "objects/all"} <= sources
    run = load_run(next((run_dir / "checkpoints").glob("*.ckpt")))
    assert type(run.net).__name__ == "NnUNetPlainConv" and run.net.depth == 2
    assert sum(p.numel() for p in run.net.parameters()) == int(read_results(run_dir / "results.csv")[0]["params"])
    resenc = compose_train(tmp_path / "resenc", "model=nnunet_resenc", "model.skips=[0]").model
    built = instantiate(resenc, in_channels=1, num_classes=2)
    assert type(built).__name__ == "NnUNetResEnc" and (built.depth, built.skip_levels) == (2, (0,))
