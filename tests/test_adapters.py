"""Library U-Nets behind the protocol (``unetlab.models.adapters``): MONAI's BasicUNet. The adapter must compute exactly
what the library computes, and a skip ablation must change exactly the tensor the library's decoder block receives
(found by hooking the library's own module), at every level and in every mode."""

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
from unetlab.models.protocol import UNetLike
from unetlab.models.unet import UNet
from unetlab.receptive_field import field_functions, unit_field
from unetlab.runs.checkpoint import LoadedRun

monai_nets = pytest.importorskip("monai.networks.nets")

FEATURES = (4, 4, 8, 16, 32, 4)
MODES = ("zero", "mean", "lowpass:1")


def basic_unet(norm="instance", in_channels: int = 1, classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return monai_nets.BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=classes, features=FEATURES,
                                norm=norm).eval()  # fmt: skip


def dyn_unet(norm: str = "instance", classes: int = 2, res_block: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return monai_nets.DynUNet(2, 1, classes, kernel_size=[3, 3, 3, 3, 3], strides=[1, 2, 2, 2, 2],
                              upsample_kernel_size=[2, 2, 2, 2], filters=[4, 8, 16, 32, 32], norm_name=norm,
                              res_block=res_block).eval()  # fmt: skip


def skip_receiver(net: nn.Module, level: int) -> nn.Module:
    """The library's own decoder block that receives encoder level ``level`` as its second argument, found the
    library's way: BasicUNet's ``upcat_{level+1}``; the ``upsample`` of DynUNet's ``level``-th recursive skip layer."""
    if isinstance(net, monai_nets.BasicUNet):
        return getattr(net, f"upcat_{level + 1}")
    layer = net.skip_layers
    for _ in range(level):
        layer = layer.next_layer
    return layer.upsample


LIBRARY_UNETS = {"basic_unet": basic_unet, "dyn_unet": dyn_unet}


def test_the_adapter_computes_what_the_library_computes():
    net = basic_unet(in_channels=3, classes=4)
    u = adapt(net)
    assert isinstance(u, UNetLike) and (u.depth, u.skip_levels) == (4, (0, 1, 2, 3))
    assert (u.in_channels, u.num_classes, u.spatial_dims) == (3, 4, 2)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        features = u.features(x)
    assert list(features) == u.feature_keys
    for level in range(5):  # level i at H/2**i, as for our U-Net
        assert tuple(features[f"enc{level}"].shape) == (2, FEATURES[level], 32 >> level, 48 >> level)
    assert tuple(features["dec0"].shape) == (2, FEATURES[5], 32, 48)
    assert [u.channels(key) for key in u.feature_keys] == [features[key].shape[1] for key in u.feature_keys]


def test_dynunet_levels_follow_its_strides():
    net = dyn_unet(classes=3)
    u = adapt(net)
    assert (u.depth, u.skip_levels, u.num_classes) == (4, (0, 1, 2, 3), 3)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        features = u.features(x)
    assert [tuple(features[f"enc{level}"].shape[1:]) for level in range(5)] == [
        (4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)
    ]  # fmt: skip
    torch.manual_seed(0)
    strided = monai_nets.DynUNet(2, 1, 2, kernel_size=[3, 3, 3], strides=[2, 2, 2], upsample_kernel_size=[2, 2])
    with pytest.raises(ValueError, match=r"DynUNet strides \[2, 2, 2\]: the adapter needs a first stride of 1"):
        adapt(strided)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_a_skip_ablation_changes_only_what_the_librarys_decoder_block_receives(library, level, mode):
    """``ablate_skips({level: mode})`` equals the library network with the second argument of its decoder block at
    that level (the encoder tensor it concatenates) replaced by its ablation, and nothing else."""
    net = LIBRARY_UNETS[library]()
    u = adapt(net)
    x = torch.randn(2, 1, 32, 32)

    def install(replace, received):
        def hook(module, args):
            received["skip"] = args[1]
            return args[0], replace(args[1])

        return skip_receiver(net, level).register_forward_pre_hook(hook)

    check_skip_ablation(net, u, x, level, mode, install)


def test_an_adapted_library_unet_is_evaluated_whole(tmp_path):
    """Model, probes, floors, ablations of every subset and Shapley values that sum to v(all) - v(none), image by
    image, on MONAI's BasicUNet through the protocol alone."""
    datamodule = ShapesDataModule(image_size=32, train_size=8, val_size=4, test_size=6, batch_size=4)
    datamodule.setup("test")
    u = adapt(basic_unet())
    run = LoadedRun(OmegaConf.create({"seed": 0}), u, datamodule, tmp_path / "run")
    options = EvalOptions(probe_steps=2, probe_images=8, ablate_modes=["zero"], objects=False, progress=False)
    rows, per_image = evaluate(run, options)
    sources = {row["source"] for row in rows}
    assert {"model", "probe/enc4", "probe/dec0", "floor/4", "ablate/zero/0,1,2,3", "shapley/zero/0"} <= sources
    total = sum(per_image[f"shapley/zero/{level}"] for level in range(4))
    assert torch.allclose(total, per_image["model"] - per_image["ablate/zero/0,1,2,3"], atol=1e-9)


@pytest.mark.parametrize("library", sorted(LIBRARY_UNETS))
def test_fields_of_a_batch_norm_library_unet_bound_its_gradients(library):
    """With BatchNorm (element-wise at test time) the theoretical fields come from the library's modules, and bound
    a unit's input gradient; instance norm reads the whole image, so its fields are refused, naming the layer."""
    u = adapt(LIBRARY_UNETS[library](norm="batch"))
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    feature = protocol.features(u, x)["enc2"]
    feature[0, :, 8, 8].sum().backward()
    y0, y1, x0, x1 = unit_field(u, "enc2", 8, 8)
    touched = x.grad[0, 0].abs() > 0
    inside = torch.zeros_like(touched)
    inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
    assert touched.any() and not (touched & ~inside).any()
    with pytest.raises(TypeError, match="InstanceNorm2d"):
        field_functions(adapt(LIBRARY_UNETS[library]()), 0)  # unit_field measures it instead
    if library == "dyn_unet":
        residual = adapt(dyn_unet(norm="batch", res_block=True))
        assert [residual.channels(key) for key in residual.feature_keys][:5] == [4, 8, 16, 32, 32]
        with pytest.raises(TypeError, match="residual blocks"):
            field_functions(residual, 0)  # unit_field measures it instead


def test_adapt_names_what_it_cannot_adapt():
    ours = UNet(depth=2)
    assert adapt(ours) is ours
    with pytest.raises(ValueError, match=r"no adapter for torch\.nn\.modules\.conv\.Conv2d; supported: .*BasicUNet"):
        adapt(nn.Conv2d(1, 1, 1))


def test_model_monai_basicunet_trains_and_is_evaluated_from_its_run_dir(tmp_path):
    """``model=monai_basicunet``: trained by Lightning like our U-Net, then evaluated from its checkpoint (the run
    loaded back by its config, not by our U-Net's weight names) to a full results table."""
    from tests.helpers import compose_train
    from unetlab.grid.job import train_then_evaluate
    from unetlab.runs.checkpoint import load_run
    from unetlab.runs.results import read_results

    run_dir = tmp_path / "run"
    model = ["model=monai_basicunet", "model.depth=4", "model.base_channels=4"]
    cfg = compose_train(run_dir, *model, "+eval.probe_steps=2", "+eval.ablate_modes=[zero]", "+eval.progress=false")
    train_then_evaluate(cfg)
    sources = {row["source"] for row in read_results(run_dir / "results.csv")}
    assert {"model", "probe/enc4", "floor/4", "ablate/zero/0,1,2,3", "shapley/zero/3", "objects/all"} <= sources
    run = load_run(next((run_dir / "checkpoints").glob("*.ckpt")))
    assert type(run.net).__name__ == "MonaiBasicUNet" and run.net.net.down_4.convs is not None
    assert sum(p.numel() for p in run.net.parameters()) == int(read_results(run_dir / "results.csv")[0]["params"])


def test_a_basicunet_of_another_depth_is_one_line_naming_the_key():
    from unetlab.models.adapters.monai_nets import monai_basic_unet

    with pytest.raises(ValueError, match="model.depth=3"):
        monai_basic_unet(1, 2, depth=3)


def test_a_skip_removed_at_training_time_is_fed_zeros():
    """BasicUNet's blocks cannot be built without their skip: a removed skip is zeros of the skip's shape, so the
    model equals the library network run with that skip zeroed, and the level cannot be ablated."""
    from unetlab.models.adapters.monai_nets import monai_basic_unet

    torch.manual_seed(0)
    u = monai_basic_unet(1, 2, base_channels=4, skips=[0, 2]).eval()
    assert u.skip_levels == (0, 2)
    x = torch.randn(2, 1, 32, 32)
    hooks = [
        skip_receiver(u.net, level).register_forward_pre_hook(lambda m, args: (args[0], torch.zeros_like(args[1])))
        for level in (1, 3)
    ]
    with torch.no_grad():
        zeroed = u.net(x)
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        assert torch.equal(u(x), zeroed) and not torch.equal(u(x), u.net(x))
    with pytest.raises(ValueError, match="1"), u.ablate_skips({1: "zero"}):
        pass


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e, d, h: (e, d[:3], h, "upsample", "convs"), r"5 encoder blocks need 4 decoder blocks, got 3"),
        (lambda e, d, h: (e, d, h, "up", "convs"), r"decoder\[0\] \(UpCat\) has no module 'up'.*has upsample, convs"),
        (lambda e, d, h: (e, d, "final_conv", "upsample", "convs"), r"head\[0\] is a str, not a module"),
    ],
)
def test_a_custom_adapter_that_names_the_wrong_blocks_is_one_line(change, message):
    """``BlockUNet`` (the custom-U-Net path of docs/models.md) says what it could not find, in one line."""
    from unetlab.models.adapters import BlockUNet

    net = basic_unet()
    encoder = [net.conv_0, net.down_1, net.down_2, net.down_3, net.down_4]
    decoder = [net.upcat_1, net.upcat_2, net.upcat_3, net.upcat_4]
    with pytest.raises(ValueError, match=message) as raised:
        BlockUNet(net, *change(encoder, decoder, net.final_conv))
    assert "\n" not in str(raised.value)
