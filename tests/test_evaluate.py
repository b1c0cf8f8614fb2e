import csv
import itertools
import json

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import TINY, compose_train, run_cli
from unetlab import UNet
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import EvalOptions, run_eval
from unetlab.evaluation.floors import class_fractions, resolution_floor
from unetlab.evaluation.probes import train_probes
from unetlab.evaluation.results import COLUMNS, read_results, write_results
from unetlab.training.checkpoint import load_config, load_state_dict
from unetlab.training.train import train

METRICS = {"dice", "iou", "hd", "hd95", "assd", "nsd", "bf1", "biou"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny depth-2 model with all skips, trained once for the module."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    cfg = compose_train(run_dir, "model.depth=2", "data.image_size=32")
    train(cfg)
    return cfg, run_dir


def quick_eval(**overrides):
    return OmegaConf.create({"probe_steps": 10, "progress": False, **overrides})


def test_results_table_has_every_source_metric_and_class(trained):
    cfg, run_dir = trained
    rows = run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(ablate_modes=["mean", "zero"]), cfg=cfg)
    table = read_results(run_dir / "results.csv")
    with open(run_dir / "results.csv") as handle:
        assert next(csv.reader(handle)) == COLUMNS
    assert len(table) == len(rows)
    keys = [(r["source"], r["metric"], r["class"]) for r in table]
    assert len(keys) == len(set(keys))  # one row per (source, metric, class)
    sources = {r["source"] for r in table}
    expected = {"model", "floor/0", "floor/1", "floor/2"}
    expected |= {f"probe/{k}" for k in ("enc0", "enc1", "enc2", "dec1", "dec0")}
    for mode in ("mean", "zero"):
        expected |= {f"ablate/{mode}/0", f"ablate/{mode}/1", f"ablate/{mode}/0,1"}
        expected |= {f"shapley/{mode}/0", f"shapley/{mode}/1"}
    assert sources == expected
    for source in sources:
        assert {(r["metric"], r["class"]) for r in table if r["source"] == source} == set(
            itertools.product(METRICS, ["1", "mean"])
        )
    first = table[0]
    assert (first["dataset"], first["depth"], first["skips"], first["image_size"]) == ("shapes", 2, "0,1", "32")
    assert first["params"] == sum(p.numel() for p in UNet(1, 2, 2, 4).parameters())
    assert all(r["n"] == 16 for r in table)
    assert {r["value"] for r in table if r["source"] == "floor/0" and r["metric"] == "dice"} == {1.0}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/dice" in metrics and metrics["eval/model/dice"] == pytest.approx(
        next(r["value"] for r in table if (r["source"], r["metric"], r["class"]) == ("model", "dice", "mean"))
    )


def test_shapley_values_sum_to_all_minus_none_for_every_metric(trained):
    cfg, run_dir = trained
    run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(probes=False, floors=False), cfg=cfg)
    value = {(r["source"], r["metric"], r["class"]): r["value"] for r in read_results(run_dir / "results.csv")}
    for metric, class_ in itertools.product(METRICS, ["1", "mean"]):
        total = value[("shapley/mean/0", metric, class_)] + value[("shapley/mean/1", metric, class_)]
        expected = value[("model", metric, class_)] - value[("ablate/mean/0,1", metric, class_)]
        assert total == pytest.approx(expected, abs=1e-9), (metric, class_)


def test_probes_are_seeded_and_deterministic(trained):
    cfg, run_dir = trained
    first = run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(floors=False, ablate_modes=[]), cfg=cfg)
    second = run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(floors=False, ablate_modes=[]), cfg=cfg)
    assert first == second
    other = run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(floors=False, ablate_modes=[], seed=1), cfg=cfg)
    assert first != other


class FloorFeatures(UNet):
    """A stand-in whose level-i features are the area-averaged class fractions at level i.

    A probe that reads its own key and upsamples bilinearly reproduces the resolution floor of that level.
    """

    def features(self, x):
        masks = x[:, 0].round().long()
        fractions = class_fractions(masks, 2)
        out = {}
        for level in range(self.depth + 1):
            pooled = torch.nn.functional.avg_pool2d(fractions, 2**level) if level else fractions
            out[f"enc{level}"] = pooled
            if level < self.depth:
                out[f"dec{level}"] = pooled
        out["logits"] = fractions
        return out


def test_probe_at_level_i_reads_level_i_and_upsamples_bilinearly():
    dm = ShapesDataModule(image_size=32, train_size=64, val_size=1, test_size=16)
    dm.setup()
    masks = dm.datasets["train"].masks
    dataset = torch.utils.data.TensorDataset(masks[:, None].float(), masks)
    net = FloorFeatures(in_channels=1, num_classes=2, depth=3, base_channels=1)
    probes = train_probes(net, dataset, 2, steps=300, lr=0.1, progress=False)
    feats = net.features(masks[:, None].float())
    for key, probe in probes.items():
        level = int(key[3:])
        pred = probe(feats[key], masks.shape[-2:]).argmax(1)
        agree_own = (pred == resolution_floor(masks, level, 2)).float().mean().item()
        assert agree_own > 0.95, (key, agree_own)
        if level < 3:
            agree_coarser = (pred == resolution_floor(masks, level + 1, 2)).float().mean().item()
            assert agree_coarser < agree_own - 0.005, (key, agree_own, agree_coarser)


def test_zero_ablation_equals_the_architecture_without_that_skip_with_the_same_weights():
    """With bias-free convolutions, a zeroed skip adds nothing to its decoder block: the output equals that of a
    U-Net built without the skip that carries the same weights minus the skip's input slice. Trained models still
    differ (the no-skip model learned without that input), which is why both ablations are reported."""
    torch.manual_seed(0)
    full = UNet(1, 2, depth=3, base_channels=4, skips="all").eval()
    cut = UNet(1, 2, depth=3, base_channels=4, skips=[0, 2]).eval()
    state = full.state_dict()
    block = 3 - 1 - 1  # decoder index of level 1
    key = f"decoder.{block}.conv.layers.0.weight"
    up_channels = state[key].shape[1] - full.widths[1]
    state[key] = state[key][:, :up_channels]
    cut.load_state_dict(state)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad(), full.ablate_skips({1: "zero"}):
        torch.testing.assert_close(full(x), cut(x))
    with torch.no_grad(), full.ablate_skips({1: "mean"}):
        assert not torch.allclose(full(x), cut(x))


def test_interrupted_write_leaves_the_old_table(tmp_path):
    path = tmp_path / "results.csv"
    run = dict.fromkeys(COLUMNS[:7], 0)
    row = {"source": "model", "metric": "dice", "class_": "mean", "value": 1.0, "std": 0.0, "n": 1, "empty_rate": 0}
    write_results(path, run, [row])
    before = path.read_text()

    def dying_rows():
        yield row
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_results(path, run, dying_rows())
    assert path.read_text() == before


def test_clear_errors_for_bad_checkpoints_and_options(trained, tmp_path):
    cfg, run_dir = trained
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.ckpt")
    corrupt = run_dir / "checkpoints" / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.ckpt is unreadable or corrupt"):
        load_state_dict(corrupt)
    with pytest.raises(ValueError, match="unknown skip ablation mode 'blur'"):
        EvalOptions(ablate_modes=["blur"])


def test_eval_options_match_eval_yaml():
    from importlib.resources import files

    yaml = OmegaConf.load(files("unetlab.conf") / "eval.yaml")
    assert OmegaConf.to_container(yaml.eval) == EvalOptions().__dict__


@pytest.mark.slow
def test_eval_cli_on_a_trained_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run = work / "run"
    run_cli("unetlab-train", *TINY, f"hydra.run.dir={run}", cwd=work)
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    out = run_cli("unetlab-eval", f"ckpt={ckpt}", "eval.probe_steps=5", "data.test_size=8", cwd=work)
    assert "wrote" in out.stdout and (run / "results.csv").is_file()
    assert {r["n"] for r in read_results(run / "results.csv")} == {8}  # the data override reached the run config
    assert sorted(p.name for p in work.iterdir()) == ["run"]  # nothing littered in the working directory
    bad = run_cli("unetlab-eval", f"ckpt={ckpt}", "model.depth=3", cwd=work, check=False)
    assert bad.returncode != 0 and "model.depth=3 does not match the checkpoint" in bad.stderr
    bad = run_cli("unetlab-eval", f"ckpt={ckpt}", "eval.ablate_modes=[blur]", cwd=work, check=False)
    assert bad.returncode != 0 and "unknown skip ablation mode 'blur'" in bad.stderr
