"""MONAI's ``UNet`` and ``AttentionUnet`` behind the protocol (``unetlab.models.adapters.monai_nets``), and the
factories of ``model=monai_unet``, ``monai_dynunet`` and ``monai_attentionunet``. The adapters must compute exactly
what the library computes, and a skip ablation must change exactly the encoder tensor that the library's own module
joins (found by hooking that module), at every skip level and in every mode."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.adapter_checks import check_skip_ablation
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import evaluate
from unetlab.evaluation.options import EvalOptions
from unetlab.models import protocol
from unetlab.models.adapters import adapt
from unetlab.models.adapters.monai_nets import monai_attentionunet, monai_dynunet, monai_unet
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import field_functions, unit_field
from unetlab.runs.checkpoint import LoadedRun

monai_nets = pytest.importorskip("monai.networks.nets")
attentionunet = pytest.importorskip("monai.networks.nets.attentionunet")

CHANNELS = (4, 8, 16, 32)  # depth 3
MODES = ("zero", "mean", "lowpass:1")


def unet(in_channels: int = 1, classes: int = 2, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return monai_nets.UNet(2, in_channels, classes, channels=CHANNELS, strides=(2, 2, 2), **kwargs).eval()


def attention_unet(in_channels: int = 1, classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return monai_nets.AttentionUnet(2, in_channels, classes, channels=CHANNELS, strides=(2, 2, 2)).eval()


LIBRARY_UNETS = {"unet": unet, "attention_unet": attention_unet}
SKIP_LEVELS = {"unet": (1, 2), "attention_unet": (0, 1, 2)}


def skip_join(net: nn.Module, level: int) -> nn.Module:
    """The library's own module that joins encoder level ``level`` to the decoder: UNet's ``SkipConnection`` at that
    level (its input is the encoder tensor, concatenated before its submodule's output); AttentionUnet's attention
    gate of the ``AttentionLayer`` at that level (which receives the encoder tensor as ``x``)."""
    if isinstance(net, monai_nets.UNet):
        connection = net.model[1]  # level 1: the first down layer already halves the image
        for _ in range(level - 1):
            connection = connection.submodule[1]
        return connection
    layer = net.model[1]
    for _ in range(level):
        layer = layer.submodule[1]
    return layer.attention


def replace_skip(net: nn.Module, level: int, replace, received: dict) -> torch.utils.hooks.RemovableHandle:
    """Hook the library's join at ``level`` so that the encoder tensor it joins becomes ``replace(skip)`` and nothing
    else changes (UNet: only the encoder half of the concatenation, not its submodule's input); the original skip is
    kept in ``received["skip"]``."""
    module = skip_join(net, level)
    if isinstance(net, monai_nets.UNet):

        def swap_half(module, args, output):
            received["skip"] = args[0]
            return torch.cat([replace(args[0]), output[:, args[0].shape[1] :]], dim=1)

        return module.register_forward_hook(swap_half)

    def swap_x(module, args, kwargs):
        received["skip"] = kwargs["x"]
        return args, {**kwargs, "x": replace(kwargs["x"])}

    return module.register_forward_pre_hook(swap_x, with_kwargs=True)


def test_monai_unet_is_the_library_net_with_levels_from_the_image_down():
    net = unet(in_channels=3, classes=4)
    u = adapt(net)
    assert isinstance(u, UNetLike) and type(u).__name__ == "MonaiUNet"
    assert (u.depth, u.skip_levels, u.in_channels, u.num_classes, u.spatial_dims) == (3, (1, 2), 3, 4, 2)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        features = u.features(x)
    assert list(features) == u.feature_keys
    assert torch.equal(features["enc0"], x)  # level 0 is the image: MONAI's first layer already halves it
    sizes = {key: tuple(feature.shape[1:]) for key, feature in features.items()}
    assert sizes == {
        "enc0": (3, 32, 48), "enc1": (4, 16, 24), "enc2": (8, 8, 12), "enc3": (16 + 32, 4, 6),
        "dec2": (2 * 8, 8, 12), "dec1": (2 * 4, 16, 24), "dec0": (4, 32, 48), "logits": (4, 32, 48),
    }  # fmt: skip
    assert [u.channels(key) for key in u.feature_keys] == [features[key].shape[1] for key in u.feature_keys]
    torch.manual_seed(0)
    strided = monai_nets.UNet(2, 1, 2, channels=CHANNELS, strides=(2, 1, 2))
    with pytest.raises(ValueError, match=r"MONAI UNet strides \[2, 1, 2\]: the adapter needs strides of 2"):
        adapt(strided)


def test_monai_attention_unet_is_the_library_net_with_our_levels():
    net = attention_unet(in_channels=3, classes=4)
    u = adapt(net)
    assert isinstance(u, UNetLike) and type(u).__name__ == "MonaiAttentionUnet"
    assert (u.depth, u.skip_levels, u.in_channels, u.num_classes, u.spatial_dims) == (3, (0, 1, 2), 3, 4, 2)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        features = u.features(x)
    assert list(features) == u.feature_keys
    for level in range(4):  # level i at H/2**i with channels[i], as for our U-Net
        shape = (2, CHANNELS[level], 32 >> level, 48 >> level)
        assert tuple(features[f"enc{level}"].shape) == shape
        if level < 3:
            assert tuple(features[f"dec{level}"].shape) == shape
    assert tuple(features["logits"].shape) == (2, 4, 32, 48)
    assert [u.channels(key) for key in u.feature_keys] == [features[key].shape[1] for key in u.feature_keys]
    torch.manual_seed(0)
    strided = monai_nets.AttentionUnet(2, 1, 2, channels=CHANNELS, strides=(2, 2, 1))
    with pytest.raises(ValueError, match=r"AttentionUnet strides \[2, 2, 1\]: the adapter needs strides of 2"):
        adapt(strided)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("library", "level"), [(library, level) for library in sorted(LIBRARY_UNETS) for level in SKIP_LEVELS[library]]
)
def test_a_skip_ablation_changes_only_the_encoder_tensor_the_library_joins(library, level, mode):
    """``ablate_skips({level: mode})`` equals the library network with the encoder tensor its own module joins at
    that level replaced by its ablation (UNet: the encoder half of ``SkipConnection``'s concatenation, not its
    submodule's input; AttentionUnet: the gate's ``x``, so also what is merged), and nothing else."""
    net = LIBRARY_UNETS[library]()
    u = adapt(net)
    assert u.skip_levels == SKIP_LEVELS[library]
    x = torch.randn(2, 1, 32, 32)
    check_skip_ablation(net, u, x, level, mode, lambda replace, received: replace_skip(net, level, replace, received))


@pytest.mark.parametrize(
    ("factory", "skips"), [(monai_unet, [2]), (monai_attentionunet, [0, 2]), (monai_dynunet, [0, 2])]
)
def test_a_skip_removed_at_training_time_is_fed_zeros(factory, skips):
    """None of these can be built without a skip: a removed skip (level 1 here) is zeros of the skip's shape, so the
    model equals the library network run with that skip zeroed, and the level cannot be ablated."""
    torch.manual_seed(0)
    u = factory(1, 2, depth=3, base_channels=4, skips=skips).eval()
    assert u.skip_levels == tuple(skips)
    x = torch.randn(2, 1, 32, 32)
    if factory is monai_dynunet:  # DynUNet's up-block at level 1 receives enc1 as its second argument
        receiver = u.net.skip_layers.next_layer.upsample
        hook = receiver.register_forward_pre_hook(lambda m, args: (args[0], torch.zeros_like(args[1])))
    else:
        hook = replace_skip(u.net, 1, torch.zeros_like, {})
    with torch.no_grad():
        zeroed = u.net(x)
    hook.remove()
    with torch.no_grad():
        assert torch.equal(u(x), zeroed) and not torch.equal(u(x), u.net(x))
    with pytest.raises(ValueError, match="cannot ablate the skip at level 1"), u.ablate_skips({1: "zero"}):
        pass


def test_the_factories_give_level_i_base_channels_times_2_to_the_i():
    """``model.base_channels``: ``b * 2**i`` channels at level ``i`` as far as each library has features there
    (MONAI's UNet has none at level 0, and its bottleneck concatenates the last down layer and the bottom layer)."""
    x = torch.randn(1, 1, 32, 32)
    widths = {}
    for factory in (monai_unet, monai_dynunet, monai_attentionunet):
        u = factory(1, 3, depth=3, base_channels=4).eval()
        with torch.no_grad():
            features = u.features(x)
        widths[factory.__name__] = [features[f"enc{level}"].shape[1] for level in range(4)]
        assert tuple(features["logits"].shape) == (1, 3, 32, 32)
    assert widths == {
        "monai_unet": [1, 8, 16, 32 + 32],
        "monai_dynunet": [4, 8, 16, 32],
        "monai_attentionunet": [4, 8, 16, 32],
    }
    assert monai_unet(1, 2, depth=3, skips="all").skip_levels == (1, 2)
    assert monai_unet(1, 2, depth=3, skips="none").skip_levels == ()


@pytest.mark.parametrize(
    ("call", "key"),
    [
        (
            lambda: monai_unet(1, 2, depth=3, skips=[0, 2]),
            r"model\.skips=\[0, 2\]: MONAI's UNet has no skip at level 0",
        ),
        (lambda: monai_unet(1, 2, depth=7), r"model\.depth=7"),
        (lambda: monai_dynunet(1, 2, depth=0), r"model\.depth=0"),
        (lambda: monai_attentionunet(1, 2, base_channels=1), r"model\.base_channels=1"),
        (lambda: monai_attentionunet(1, 2, depth=3, skips=[3]), r"model\.skips=\[3\]"),
    ],
)
def test_an_impossible_factory_value_is_one_line_naming_the_key(call, key):
    with pytest.raises(ValueError, match=key) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def floor_cache(tmp_path_factory):
    """One floors cache for the module: the floors depend on the test masks alone, so both adapters share them."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_an_adapted_monai_unet_is_evaluated_whole(library, tmp_path, floor_cache, monkeypatch):
    """Model, probes, floors, ablations of every subset of the adapter's skips and Shapley values that sum to
    v(all) - v(none), image by image, through the protocol alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(floor_cache))
    datamodule = ShapesDataModule(image_size=32, train_size=8, val_size=4, test_size=6, batch_size=4)
    datamodule.setup("test")
    u = adapt(LIBRARY_UNETS[library]())
    run = LoadedRun(OmegaConf.create({"seed": 0}), u, datamodule, tmp_path / "run")
    light = {"tolerances": [2.0], "resamples": 100}
    options = EvalOptions(probe_steps=2, probe_images=8, ablate_modes=["zero"], objects=False, progress=False, **light)
    rows, per_image = evaluate(run, options)
    levels = SKIP_LEVELS[library]
    every = ",".join(map(str, levels))
    sources = {row["source"] for row in rows}
    assert {"model", "probe/enc0", "probe/enc3", "probe/dec0", "floor/3", f"ablate/zero/{every}"} <= sources
    assert {f"shapley/zero/{level}" for level in levels} <= sources
    total = sum(per_image[f"shapley/zero/{level}"] for level in levels)
    assert torch.allclose(total, per_image["model"] - per_image[f"ablate/zero/{every}"], atol=1e-9)


def gradient_inside_field(u: UNetLike, key: str, y: int, x: int) -> None:
    """The input gradient of unit (y, x) of ``key`` is zero outside ``unit_field`` and reaches the field's edges
    inside the 64 x 64 image (clipped)."""
    image = torch.rand(1, u.in_channels, 64, 64, requires_grad=True)
    protocol.features(u, image)[key][0, :, y, x].sum().backward()
    y0, y1, x0, x1 = unit_field(u, key, y, x)
    touched = image.grad[0].abs().sum(0) > 0
    inside = torch.zeros_like(touched)
    inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
    assert touched.any() and not (touched & ~inside).any(), key
    rows, cols = touched.any(1).nonzero().flatten().tolist(), touched.any(0).nonzero().flatten().tolist()
    reached = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    assert reached == (max(y0, 0), min(y1, 64), max(x0, 0), min(x1, 64)), key


def test_fields_of_a_batch_norm_monai_unet_bound_its_gradients():
    """With BatchNorm and ReLU the fields come from the modules (the bottleneck's concatenation and every skip
    included); instance norm and residual units are refused, naming why."""
    u = adapt(unet(norm="batch", act="relu"))
    for key, y, x in (("enc3", 3, 4), ("dec1", 13, 6), ("logits", 21, 30)):
        gradient_inside_field(u, key, y, x)
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        field_functions(adapt(unet()), 0)  # unit_field measures it instead
    residual = adapt(unet(norm="batch", act="relu", num_res_units=1))
    assert [residual.channels(key) for key in residual.feature_keys] == [1, 4, 8, 48, 16, 8, 2, 2]
    with pytest.raises(TypeError, match=r"residual units \(num_res_units=1\)"):
        field_functions(residual, 0)  # unit_field measures it instead


def test_fields_of_an_attention_unet_take_the_gate_as_a_join():
    """MONAI builds AttentionUnet's merges with instance norm: its fields are refused naming it. With BatchNorm in
    their place, the point-wise gate joins the skip as a concatenation would, and the fields bound the gradient."""
    net = attention_unet()
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        field_functions(adapt(net), 0)  # unit_field measures it instead
    merges = [m.merge for m in net.modules() if isinstance(m, attentionunet.AttentionLayer)]
    assert len(merges) == 3
    for merge in merges:
        merge.adn.N, merge.adn.A = nn.BatchNorm2d(merge.conv.out_channels).eval(), nn.ReLU()
    u = adapt(net)
    for key, y, x in (("dec2", 3, 4), ("dec0", 21, 30), ("logits", 40, 17)):
        gradient_inside_field(u, key, y, x)


def test_model_monai_unet_trains_and_is_evaluated_from_its_run_dir(tmp_path, floor_cache, monkeypatch):
    """``model=monai_unet``: trained by Lightning like our U-Net, then evaluated from its checkpoint (loaded back by
    its config) to a full results table over its skips at levels 1..D-1. The test split is the evaluation test's
    (sample i of a split does not depend on the split's size), so the floors come from the shared cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(floor_cache))
    from tests.helpers import compose_train
    from unetlab.grid.job import train_then_evaluate
    from unetlab.runs.checkpoint import load_run
    from unetlab.runs.results import read_results

    run_dir = tmp_path / "run"
    model = ["model=monai_unet", "model.depth=2", "model.base_channels=4"]
    light = ["+eval.probe_steps=2", "+eval.ablate_modes=[zero]", "+eval.tolerances=[2.0]", "+eval.resamples=100"]
    data = ["data.train_size=8", "data.val_size=4", "data.test_size=6", "data.batch_size=4"]
    cfg = compose_train(run_dir, *model, *data, *light, "+eval.progress=false")
    train_then_evaluate(cfg)
    results = read_results(run_dir / "results.csv")
    sources = {row["source"] for row in results}
    assert {"model", "probe/enc0", "probe/enc2", "floor/2", "ablate/zero/1", "shapley/zero/1", "objects/all"} <= sources
    assert results[0]["skips"] == "1"
    run = load_run(next((run_dir / "checkpoints").glob("*.ckpt")))
    assert type(run.net).__name__ == "MonaiUNet" and run.net.skip_levels == (1,)
    assert sum(p.numel() for p in run.net.parameters()) == int(results[0]["params"])
