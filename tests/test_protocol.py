"""The U-Net protocol: a model that is not our ``UNet`` (its decoder adds a projected skip instead of concatenating
it) goes through every measurement, and the measurement code reaches into no model's internals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from unetlab.conventions import level_of
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.ablations import decode_variants
from unetlab.evaluation.evaluate import evaluate
from unetlab.evaluation.options import EvalOptions
from unetlab.explain.topk import top_units
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.models.skip_ablation import ablation_transform
from unetlab.models.unet import UNet
from unetlab.receptive_field import receptive_fields, unit_field
from unetlab.runs.checkpoint import LoadedRun

PACKAGE = Path(__file__).resolve().parents[1] / "unetlab"


class AddSkipUNet(nn.Module):
    """A U-Net of another make: one 3x3 conv per level, average-pool down, 2x2 transposed conv up, and each kept skip
    added through a 1x1 projection (no concatenation); its own attribute names."""

    spatial_dims = 2

    def __init__(self, depth: int = 2, skips: tuple[int, ...] = (0, 1), width: int = 4, in_channels: int = 1):
        super().__init__()
        self.depth, self.skip_levels, self.in_channels, self.num_classes = depth, tuple(skips), in_channels, 2
        self.widths = [width * 2**level for level in range(depth + 1)]
        self.downs = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())])
        for level in range(1, depth + 1):
            self.downs.append(nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(self.widths[level - 1], self.widths[level], 3,
                                                                       padding=1), nn.ReLU()))  # fmt: skip
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(self.widths[i + 1], self.widths[i], 2, stride=2) for i in range(depth)
        )
        self.projections = nn.ModuleList(nn.Conv2d(self.widths[i], self.widths[i], 1) for i in range(depth))
        self.mixers = nn.ModuleList(nn.Sequential(nn.Conv2d(self.widths[i], self.widths[i], 3, padding=1), nn.ReLU())
                                    for i in range(depth))  # fmt: skip
        self.out = nn.Conv2d(width, 2, 1)

    def channels(self, key: str) -> int:
        return 2 if key == "logits" else self.widths[level_of(key)]

    def encode_level(self, level: int, x: Tensor) -> Tensor:
        return self.downs[level](x)

    def decode_level(self, level: int, x: Tensor, skip: Tensor | None) -> Tensor:
        x = self.ups[level](x)
        if skip is not None:
            x = x + self.projections[level](skip)
        return self.mixers[level](x)

    def head(self, x: Tensor) -> Tensor:
        return self.out(x)

    def stage(self, key: str) -> tuple[nn.Module, ...]:
        if key == "logits":
            return (self.out,)
        level = level_of(key)
        return (self.downs[level],) if key.startswith("enc") else (self.ups[level], self.mixers[level])

    def forward(self, x: Tensor) -> Tensor:
        return protocol.decode(self, protocol.encode(self, x))["logits"]


def test_our_unet_and_another_make_both_follow_the_protocol():
    assert isinstance(UNet(depth=2), UNetLike)
    assert isinstance(AddSkipUNet(), UNetLike)
    assert not isinstance(nn.Conv2d(1, 1, 1), UNetLike)


def test_protocol_decode_is_our_unets_own_forward():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=4, skips=[0, 2]).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(protocol.features(net, x)["logits"], net(x))
        assert torch.equal(protocol.features(net, x)["dec1"], net.features(x)["dec1"])


def test_ablation_variants_of_another_make_equal_decoding_each_alone():
    torch.manual_seed(0)
    net = AddSkipUNet(depth=3, skips=(0, 1, 2)).eval()
    x = torch.randn(2, 1, 16, 16)
    variants = {"intact": {}, "a": {0: "zero"}, "b": {2: "mean"}, "c": {0: "mean", 1: "lowpass:1", 2: "zero"}}
    with torch.no_grad():
        encoded = protocol.encode(net, x)
        together = decode_variants(net, encoded, variants)
        for name, ablation in variants.items():
            alone = protocol.decode(net, encoded, ablation_transform(ablation))["logits"]
            assert torch.equal(together[name], alone), name
        assert not torch.allclose(together["intact"], together["c"])  # the ablations change the logits
    with pytest.raises(ValueError, match="keeps skips at levels"):
        decode_variants(
            AddSkipUNet(depth=2, skips=(1,)), protocol.encode(AddSkipUNet(depth=2, skips=(1,)), x), {"x": {0: "zero"}}
        )


@pytest.mark.parametrize("key", ["enc1", "dec1", "dec0"])
def test_theoretical_fields_of_another_make_bound_its_gradients(key):
    """A unit's gradient with respect to the input is zero outside the box ``unit_field`` gives, and reaches the
    box's edges: the fields come from ``stage`` alone, right for a model that adds its skips."""
    torch.manual_seed(0)
    net = AddSkipUNet(depth=2, skips=(0,)).eval()
    for module in net.modules():  # positive weights: no gradient cancels inside the field
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.weight.data.abs_().add_(0.01)
    x = torch.rand(1, 1, 48, 48, requires_grad=True)
    feature = protocol.features(net, x)[key]
    y = x_ = feature.shape[-1] // 2
    feature[0, :, y, x_].sum().backward()
    y0, y1, x0, x1 = unit_field(net, key, y, x_)
    touched = x.grad[0, 0].abs() > 0
    inside = torch.zeros_like(touched)
    inside[max(y0, 0) : y1, max(x0, 0) : x1] = True
    assert touched.any() and not (touched & ~inside).any()
    rows, cols = touched.any(dim=1).nonzero(), touched.any(dim=0).nonzero()
    assert (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1) == (y0, y1, x0, x1)
    assert receptive_fields(net)[key].size >= y1 - y0


def test_another_make_is_evaluated_and_its_units_ranked(tmp_path):
    """The whole evaluation (model, probes, floors, ablations and Shapley, objects) and the top-k units run on a model
    that is not our UNet, through the protocol alone."""
    torch.manual_seed(0)
    datamodule = ShapesDataModule(image_size=16, train_size=8, val_size=4, test_size=4, batch_size=4)
    datamodule.setup("test")
    net = AddSkipUNet(depth=2, skips=(0, 1)).eval()
    run = LoadedRun(OmegaConf.create({"seed": 0}), net, datamodule, tmp_path / "run")
    options = EvalOptions(probe_steps=2, probe_images=8, ablate_modes=["zero"], resamples=1000, progress=False)
    rows, per_image = evaluate(run, options)
    sources = {row["source"] for row in rows}
    assert {"model", "probe/enc2", "probe/dec0", "floor/2", "ablate/zero/0,1", "shapley/zero/1"} <= sources
    assert per_image["model"].shape[0] == 4
    top = top_units(net, DataLoader(datamodule.datasets["test"], batch_size=2), {"enc1": [0, 3], "dec0": [1]}, k=2)
    assert top["enc1"].values.shape == (2, 2) and top["dec0"].values.shape == (1, 2)


MEASUREMENTS = ["evaluation", "explain", "report", "erf.py", "receptive_field.py", "runs"]
INTERNALS = {"encoder", "decoder", "widths", "decode_variants_of", "ablate_skips"}


def measurement_files() -> list[Path]:
    files = []
    for name in MEASUREMENTS:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_measurements_reach_into_no_models_internals():
    """Measurement code imports no model class and reads none of our UNet's own attributes (its blocks, widths, its
    test-time ablation switch): only the protocol's members."""
    offences = []
    for path in measurement_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "unetlab.models.unet":
                offences.append(f"{path.name}:{node.lineno} imports unetlab.models.unet")
            if isinstance(node, ast.Attribute) and node.attr in INTERNALS:
                offences.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not offences, offences


COMMANDS = ("training", "evaluation", "explain", "report")


def test_command_folders_import_none_of_each_other():
    """What two commands share lives below them (runs/, models/, metrics/, ...); only the grid and the CLI compose
    commands."""
    offences = []
    for folder in COMMANDS:
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "unetlab" and len(parts) > 1 and parts[1] in COMMANDS and parts[1] != folder:
                        offences.append(f"{folder}/{path.name}:{node.lineno} imports {node.module}")
    assert not offences, offences


def test_every_package_folder_ships_in_a_regular_install():
    """pyproject.toml lists its packages by name: a folder missing there works in an editable install and fails in a
    regular one (``pip install .``)."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "unetlab" + "".join(f".{part}" for part in init.parent.relative_to(PACKAGE).parts)
        for init in PACKAGE.rglob("__init__.py")
    }
    assert folders <= listed, sorted(folders - listed)
