"""Weights trained elsewhere (``unetlab.runs.foreign``, ``unetlab-eval model=NAME weights=PATH``): a plain state dict,
a Lightning or nnU-Net checkpoint's, loaded with ``weights_only=True`` into the configured model and evaluated like a
run of our own; keys or shapes that do not match, and files that need arbitrary pickled objects, are one line."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import run_cli
from unetlab.models.unet import UNet
from unetlab.runs.foreign import load_weights, read_weights

monai_nets = pytest.importorskip("monai.networks.nets")


def basic_unet(features=(4, 4, 8, 16, 32, 4)):
    torch.manual_seed(3)
    return monai_nets.BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=features, norm="batch")


def adapted(base_channels: int = 4):
    from unetlab.models.adapters.monai_nets import monai_basic_unet

    return monai_basic_unet(1, 2, base_channels=base_channels)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda state: state,  # net.state_dict() saved as it is
        lambda state: {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3},  # Lightning
        lambda state: {"network_weights": state, "current_epoch": 1000, "trainer_name": "nnUNetTrainer"},  # nnU-Net
        lambda state: {f"module.{k}": v for k, v in state.items()},  # saved from DistributedDataParallel
    ],
    ids=["plain", "lightning", "nnunet", "ddp"],
)
def test_weights_in_each_layout_load_into_the_library_network(tmp_path, wrap):
    net = basic_unet(features=(4, 8, 16, 32, 64, 4))
    path = tmp_path / "w.pth"
    torch.save(wrap(net.state_dict()), path)
    u = adapted().eval()
    load_weights(u, read_weights(path), path)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(u(x), net.eval()(x))


def test_our_own_unets_weights_load_too(tmp_path):
    torch.manual_seed(0)
    source, target = UNet(depth=2, base_channels=4), UNet(depth=2, base_channels=4)
    torch.save(source.state_dict(), tmp_path / "ours.pt")
    load_weights(target, read_weights(tmp_path / "ours.pt"), "ours.pt")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_keys_or_shapes_that_do_not_match_are_named(tmp_path):
    torch.save(basic_unet().state_dict(), tmp_path / "w.pt")  # base 4 at level 1, where the model has 8
    with pytest.raises(ValueError, match=r"size mismatch for down_1"):
        load_weights(adapted(), read_weights(tmp_path / "w.pt"), "w.pt")
    state = basic_unet(features=(4, 8, 16, 32, 64, 4)).state_dict()
    state["extra.weight"] = state.pop("final_conv.weight")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"missing 'final_conv\.weight', unexpected 'extra\.weight'"):
        load_weights(adapted(), read_weights(tmp_path / "renamed.pt"), "renamed.pt")


def test_a_file_that_needs_pickled_objects_is_refused_unless_allowed(tmp_path):
    torch.save(basic_unet(), tmp_path / "module.pt")  # a whole nn.Module: unpickling it imports and runs code
    with pytest.raises(ValueError, match=r"need arbitrary pickled objects.*weights_allow_pickle=true"):
        read_weights(tmp_path / "module.pt")
    with pytest.raises(ValueError, match="hold no state dict"):
        read_weights(tmp_path / "module.pt", allow_pickle=True)  # trusted, read, but a module is not a state dict
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt are unreadable"):
        read_weights(tmp_path / "junk.pt")


def test_unetlab_eval_measures_weights_trained_elsewhere(tmp_path):
    """The whole command: the import writes a run dir (config beside the weights) and evaluates it to results.csv."""
    from unetlab.runs.results import read_results

    net = basic_unet(features=(4, 8, 16, 32, 64, 4))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    args = ["model=monai_basicunet", "model.base_channels=4", "data.image_size=32", "data.test_size=8"]
    fast = ["eval.probe_steps=2", "eval.probe_images=8", "eval.ablate_modes=[zero]", "eval.objects=false"]
    proc = run_cli("unetlab-eval", *args, "weights=w.pt", *fast, "eval.progress=false", cwd=tmp_path)
    run_dir = tmp_path / "imported" / "w"
    assert "imported w.pt into imported/w" in proc.stdout
    rows = read_results(run_dir / "results.csv")
    assert {"model", "probe/enc4", "floor/4", "shapley/zero/3"} <= {row["source"] for row in rows}
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("monai_basic_unet") == 1
    bad = run_cli("unetlab-eval", *args, "model.base_channels=8", "weights=w.pt", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("unetlab-eval: error: weights w.pt")
