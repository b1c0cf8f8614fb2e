"""segmentation_models_pytorch's ``Unet`` behind the protocol (``unetlab/models/adapters/smp_nets.py``). The adapter
must compute exactly what smp computes, for each kind of encoder it splits into levels, and a skip ablation must
change exactly the ``skip_connection`` that smp's own ``UnetDecoderBlock`` receives, at every level and in every mode.

smp needs torchvision, which does not install beside the main environment's CPU torch: these tests run in a second
environment (``.ci/run`` builds it) and skip elsewhere, except the one that checks the error without smp.
"""

from __future__ import annotations

import functools
import sys

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from tests.adapter_checks import check_skip_ablation
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import evaluate
from unetlab.evaluation.options import EvalOptions
from unetlab.models.adapters import adapt
from unetlab.models.adapters.smp_nets import smp_unet
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import field_functions, field_kind
from unetlab.runs.checkpoint import LoadedRun

MODES = ("zero", "mean", "lowpass:1")
DECODER = (32, 16, 8, 4)  # smp's order: the deepest block first; decoder level i has 4 * 2**i channels
ENCODERS = ("resnet18", "tu-regnetx_002")  # smp's ResNet encoder; a timm FeatureListNet from 1/2 of the input


@pytest.fixture(scope="module")
def smp():
    return pytest.importorskip("segmentation_models_pytorch")


@functools.cache
def library_unet(encoder: str, in_channels: int = 1, classes: int = 2, depth: int = 4) -> nn.Module:
    """smp's Unet with random weights in eval mode, built once per arguments (the tests only read it)."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.Unet(encoder, encoder_depth=depth, encoder_weights=None, decoder_channels=DECODER[-depth:],
                    in_channels=in_channels, classes=classes).eval()  # fmt: skip


def block_of(net: nn.Module, level: int) -> nn.Module:
    """smp's own decoder block of level ``level``: ``UnetDecoder.forward`` runs ``blocks[k]`` at 1/2**(D-1-k)."""
    return net.decoder.blocks[len(net.decoder.blocks) - 1 - level]


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("encoder", "depth"), [("resnet18", 4), ("tu-regnetx_002", 4), ("tu-vgg11", 2)])
def test_the_adapter_computes_what_the_library_computes(smp, encoder, depth):
    """Exactly smp's output; ``enc0`` is the image, ``enc{i}`` the encoder's feature at H/2**i, ``dec{i}`` smp's block
    output at H/2**i; the skips are levels 1..D-1. ``tu-vgg11`` is a VGG-style timm encoder, whose first feature (at
    full resolution, dropped by smp's decoder) lies inside level 1."""
    net = library_unet(encoder, in_channels=3, classes=4, depth=depth)
    u = adapt(net)
    assert isinstance(u, UNetLike) and (u.depth, u.skip_levels) == (depth, tuple(range(1, depth)))
    assert (u.in_channels, u.num_classes, u.spatial_dims) == (3, 4, 2)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(u(x), net(x))
        encoded = net.encoder(x)
        features = u.features(x)
    assert list(features) == u.feature_keys and torch.equal(features["enc0"], x)
    for level in range(1, depth + 1):
        assert torch.equal(features[f"enc{level}"], encoded[level])
        assert tuple(features[f"enc{level}"].shape) == (2, net.encoder.out_channels[level], 32 >> level, 48 >> level)
    for level in range(depth):
        assert tuple(features[f"dec{level}"].shape) == (2, 4 * 2**level, 32 >> level, 48 >> level)
    assert [u.channels(key) for key in u.feature_keys] == [features[key].shape[1] for key in u.feature_keys]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_skip_ablation_changes_only_what_the_librarys_decoder_block_receives(smp, encoder, level, mode):
    """``ablate_skips({level: mode})`` equals smp's network with the ``skip_connection`` that its decoder block of
    that level receives replaced by its ablation, and nothing else."""
    net = library_unet(encoder)
    u = adapt(net)
    x = torch.randn(2, 1, 32, 32)

    def install(replace, received):
        def hook(module, args, kwargs):
            received["skip"] = kwargs["skip_connection"]
            return args, {**kwargs, "skip_connection": replace(kwargs["skip_connection"])}

        return block_of(net, level).register_forward_pre_hook(hook, with_kwargs=True)

    check_skip_ablation(net, u, x, level, mode, install)


def test_a_skip_removed_at_training_time_is_not_built(smp):
    """``model.skips`` leaves a level out: its block is built without the skip (fewer weights), receives None, and
    the level cannot be ablated; the adapter reads the skips from the blocks, so adapting the network again agrees.
    Level 0 has no skip in smp's Unet: naming it is an error naming ``model.skips``."""
    torch.manual_seed(0)
    u = smp_unet(1, 2, base_channels=4, skips=[1, 3]).eval()
    whole = smp_unet(1, 2, base_channels=4)
    assert u.skip_levels == (1, 3) and adapt(u.net).skip_levels == (1, 3) and whole.skip_levels == (1, 2, 3)
    assert [u.channels(f"dec{level}") for level in range(4)] == [4, 8, 16, 32]  # base_channels * 2**i
    assert block_of(u.net, 2).conv1[0].in_channels == u.channels("dec3")
    removed = parameters(block_of(whole.net, 2)) - parameters(block_of(u.net, 2))
    assert removed > 0 and parameters(whole) - parameters(u) == removed  # only level 2's block changed
    received = {}
    hooks = [
        block_of(u.net, level).register_forward_pre_hook(
            lambda m, args, kwargs, level=level: received.update({level: kwargs["skip_connection"]}), with_kwargs=True
        )
        for level in range(4)
    ]
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        u(x)
        encoded = u.encode(x)
    for hook in hooks:
        hook.remove()
    assert received[0] is None and received[2] is None
    assert torch.equal(received[1], encoded[1]) and torch.equal(received[3], encoded[3])
    with pytest.raises(ValueError, match="2"), u.ablate_skips({2: "zero"}):
        pass
    with pytest.raises(ValueError, match=r"model.skips=\[0, 1\]: smp's Unet has no skip at level 0"):
        smp_unet(1, 2, skips=[0, 1])


def test_an_adapted_smp_unet_is_evaluated_whole(smp, tmp_path):
    """Model, probes, floors, ablations of every subset and Shapley values that sum to v(all) - v(none), image by
    image, on smp's Unet through the protocol alone."""
    datamodule = ShapesDataModule(image_size=32, train_size=8, val_size=4, test_size=6, batch_size=4)
    datamodule.setup("test")
    torch.manual_seed(0)
    u = smp_unet(1, 2, depth=3, base_channels=4)
    run = LoadedRun(OmegaConf.create({"seed": 0}), u, datamodule, tmp_path / "run")
    options = EvalOptions(probe_steps=2, probe_images=8, ablate_modes=["zero"], objects=False, progress=False)
    rows, per_image = evaluate(run, options)
    sources = {row["source"] for row in rows}
    assert {"model", "probe/enc3", "probe/dec0", "floor/3", "ablate/zero/1,2", "shapley/zero/2"} <= sources
    total = sum(per_image[f"shapley/zero/{level}"] for level in (1, 2))
    assert torch.allclose(total, per_image["model"] - per_image["ablate/zero/1,2"], atol=1e-9)


def test_fields_are_refused_naming_why(smp):
    """A ResNet encoder's residual shortcut is a second path; and smp's decoder up-samples with F.interpolate, not a
    layer the fields can read."""
    with pytest.raises(TypeError, match="smp's ResNet encoder: its residual blocks' shortcut is a second path"):
        field_functions(adapt(library_unet("resnet18")), 0)  # unit_field measures it instead
    with pytest.raises(TypeError, match="up-sample with F.interpolate"):
        field_functions(adapt(library_unet("tu-regnetx_002")), 0)  # unit_field measures it instead
    assert field_kind(adapt(library_unet("resnet18"))) == "measured"


def test_what_cannot_be_adapted_or_built_is_one_line_naming_it(smp):
    """An encoder no split reproduces (here smp's MobileNetV2), a dilated one, and a depth or dimension smp cannot
    build."""
    torch.manual_seed(0)
    mobilenet = smp.Unet("mobilenet_v2", encoder_depth=3, encoder_weights=None, decoder_channels=(16, 8, 4),
                         in_channels=1, classes=2)  # fmt: skip
    with pytest.raises(ValueError, match="no per-level split of smp's MobileNetV2Encoder"):
        adapt(mobilenet)
    dilated = smp.Unet("resnet18", encoder_depth=5, encoder_weights=None, output_stride=16, in_channels=1, classes=2)
    with pytest.raises(ValueError, match="output stride 16 at depth 5: a dilated encoder's levels are not at 1/2"):
        adapt(dilated)
    with pytest.raises(ValueError, match=r"^model.depth=6: smp's resnet18 encoder cannot be built so deep") as err:
        smp_unet(1, 2, depth=6)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="model.spatial_dims=3"):
        smp_unet(1, 2, spatial_dims=3)


def test_model_smp_unet_trains_and_is_evaluated_from_its_run_dir(smp, tmp_path):
    """``model=smp_unet``: trained by Lightning like our U-Net, then evaluated from its checkpoint (the run loaded
    back by its config) to a full results table."""
    from tests.helpers import compose_train
    from unetlab.grid.job import train_then_evaluate
    from unetlab.runs.checkpoint import load_run
    from unetlab.runs.results import read_results

    run_dir = tmp_path / "run"
    model = ["model=smp_unet", "model.depth=3", "model.base_channels=4", "model.skips=[2]"]
    cfg = compose_train(run_dir, *model, "+eval.probe_steps=2", "+eval.ablate_modes=[zero]", "+eval.progress=false")
    train_then_evaluate(cfg)
    results = read_results(run_dir / "results.csv")
    sources = {row["source"] for row in results}
    assert {"model", "probe/enc3", "floor/3", "ablate/zero/2", "shapley/zero/2", "objects/all"} <= sources
    run = load_run(next((run_dir / "checkpoints").glob("*.ckpt")))
    assert type(run.net).__name__ == "SmpUnet" and run.net.skip_levels == (2,)
    assert sum(p.numel() for p in run.net.parameters()) == int(results[0]["params"])


def test_model_smp_unet_without_smp_is_one_line(monkeypatch):
    """Without smp (the main environment, or here with its import blocked) ``model=smp_unet`` says what to install."""
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # `import` of it raises ImportError
    with pytest.raises(ValueError) as err:
        smp_unet(1, 2)
    assert str(err.value) == (
        'model=smp_unet needs segmentation_models_pytorch (and torchvision): pip install "unetlab[smp]"'
    )
