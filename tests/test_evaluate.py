import csv
import itertools
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import TINY, compose_train, finished_records, run_cli
from unetlab import UNet
from unetlab.conventions import level_of
from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation.evaluate import EvalOptions, probe_pool_seed, run_eval
from unetlab.evaluation.floors import class_fractions, resolution_floor
from unetlab.evaluation.probes import train_probes
from unetlab.grid.job import train_then_evaluate
from unetlab.metrics import BoundaryMetrics
from unetlab.metrics.functional import DISTANCE_METRICS, METRIC_NAMES
from unetlab.models import protocol
from unetlab.runs.checkpoint import load_config, load_run, load_state_dict
from unetlab.runs.results import COLUMNS, read_per_image, read_results, write_results
from unetlab.sources import is_objects
from unetlab.training.train import train

METRICS = list(METRIC_NAMES)


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
    bins = ("0-4", "4-8", "8-16", "16-32", "32+", "all")  # "all" pools every size
    keys = ("enc0", "enc1", "enc2", "dec1", "dec0")
    objects = {f"objects/{b}" for b in bins} | {f"floor/{i}/objects/{b}" for i in range(3) for b in bins}
    objects |= {f"probe/{key}/objects/{b}" for key in keys for b in bins}  # found vs placed, every probe key
    assert sources == expected | objects
    distances = [f"{m}_nonempty" for m in DISTANCE_METRICS]
    swept = [f"{m}@{t:g}" for t in (0.5, 1, 2, 4, 8) for m in ("nsd", "bf1")]
    for source in sources:
        if source in objects:
            metrics = ["detected", "hd95", "assd", "spurious"]
        else:
            metrics = [*METRICS, *(distances if not source.startswith("shapley/") else [])]
            metrics += swept if source == "model" else []
        assert {(r["metric"], r["class"]) for r in table if r["source"] == source} == set(
            itertools.product(metrics, ["1", "mean"])
        ), source
    for row in table:  # every number has its interval (none where no image has both masks), distances their unit
        if math.isnan(row["value"]):  # no image with both masks; no object (detected object) of that size
            assert row["metric"].endswith("_nonempty") or row["source"] in objects, row
            assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
        else:
            assert row["ci_low"] <= row["value"] + 1e-9 and row["value"] <= row["ci_high"] + 1e-9, row
        assert row["unit"] == ("px" if row["metric"].removesuffix("_nonempty") in DISTANCE_METRICS else "")
    # The shapes' objects are 4-16 px across at 32 px: the floor of level 0 finds them all
    floor0 = [r for r in table if r["source"].startswith("floor/0/objects/") and r["metric"] == "detected"]
    assert sum(r["n"] for r in floor0 if r["class"] == "mean") > 16
    assert {r["value"] for r in floor0 if r["n"]} == {1.0}
    # the pooled bin counts every object of the sized bins, for the floors and the probes alike
    for source in ("floor/1", "probe/enc1", "probe/dec0"):
        rows = [r for r in table if r["source"].startswith(f"{source}/objects/") and r["class"] == "mean"]
        counts = {r["source"].rsplit("/", 1)[1]: r["n"] for r in rows if r["metric"] == "detected"}
        assert counts["all"] == sum(n for name, n in counts.items() if name != "all") > 16, source
    per_image = read_per_image(run_dir / "per_image.npz")
    assert set(per_image) == expected | objects  # the per-object sources as their per-image sums
    for source in objects:  # (M, C-1, 7): the rows are ratios of their sums over the images
        sums = per_image[source].sum(dim=0)[0]
        detected = next(r for r in table if (r["source"], r["metric"], r["class"]) == (source, "detected", "1"))
        assert detected["n"] == int(sums[0]) and (not sums[0] or detected["value"] == pytest.approx(sums[1] / sums[0]))
    model_dice = next(r for r in table if (r["source"], r["metric"], r["class"]) == ("model", "dice", "1"))
    assert per_image["model"][:, 0, METRICS.index("dice")].mean().item() == pytest.approx(model_dice["value"])
    first = table[0]
    assert (first["dataset"], first["depth"], first["skips"], first["image_size"]) == ("shapes", 2, "0,1", "32")
    assert first["params"] == sum(p.numel() for p in UNet(1, 2, 2, 4).parameters())
    assert all(r["n"] == 16 for r in table if not r["metric"].endswith("_nonempty") and r["source"] not in objects)
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
    assert repr(first) == repr(second)  # repr: NaN (no image with both masks) equals itself there
    other = run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(floors=False, ablate_modes=[], seed=1), cfg=cfg)
    assert repr(first) != repr(other)


def test_each_run_fits_its_probes_on_a_pool_of_its_own(trained):
    """The pool's seed is eval.seed plus the run's seed: the seeds of a model fit their probes on different pools
    (so the report's seed-level bootstrap resamples the pools), while the test-image resamples stay shared."""
    cfg, run_dir = trained
    ckpt, options = run_dir / "checkpoints" / "last.ckpt", quick_eval(floors=False, ablate_modes=[], objects=False)
    first = run_eval(ckpt, options, cfg=cfg)
    moved = run_eval(ckpt, options, cfg=OmegaConf.merge(cfg, {"seed": int(cfg.seed) + 1}))

    def probes(rows):
        return {(r["source"], r["metric"], r["class"]): r["value"] for r in rows if r["source"].startswith("probe/")}

    def model(rows):
        return [r for r in rows if r["source"] == "model"]

    assert repr(model(first)) == repr(model(moved))  # the network and the test resamples are the same
    assert repr(probes(first)) != repr(probes(moved))
    assert probe_pool_seed(3, OmegaConf.create({"seed": 2})) == 5


def test_a_grid_job_evaluates_after_training_with_its_eval_keys(trained, capsys):
    cfg, run_dir = trained
    (run_dir / "results.csv").unlink(missing_ok=True)
    # As unetlab-ablate sets it: some eval keys only, the rest at their defaults.
    cfg = OmegaConf.merge(cfg, {"eval": {"probes": False, "floors": False, "ablate_modes": [], "objects": False}})
    train_then_evaluate(cfg)  # trained already: not trained again, evaluated
    assert {r["source"] for r in read_results(run_dir / "results.csv")} == {"model"}
    # The trainer ran without progress bars (TINY), so the evaluation prints no summary either.
    assert "model (mean over classes)" not in capsys.readouterr().out


class FloorFeatures(UNet):
    """A stand-in whose level-i features are the area-averaged class fractions at level i: the most a level-i map
    can know of the masks, and where the resolution floor's optimisation starts. Written through the protocol's
    members, which is all that the probes read."""

    def encode_level(self, level, x):
        if level == 0:
            return class_fractions(x[:, 0].round().long(), 2)
        return torch.nn.functional.avg_pool2d(x, 2)

    def decode_level(self, level, x, skip):
        return skip  # dec<i> is enc<i>: every skip is kept

    def head(self, x):
        return x


def test_no_probe_beats_the_resolution_floor_of_its_level():
    """Probes on the best features a level can hold score no better than that level's floor (beyond a 0.25 px
    tolerance for the floor's surrogate optimisation), and worse at every coarser level."""
    dm = ShapesDataModule(image_size=32, train_size=64, val_size=1, test_size=16)
    dm.setup()
    masks = dm.datasets["train"].masks
    dataset = torch.utils.data.TensorDataset(masks[:, None].float(), masks)
    net = FloorFeatures(in_channels=1, num_classes=2, depth=3, base_channels=1)
    probes = train_probes(net, dataset, 2, steps=100, progress=False)
    feats = protocol.features(net, masks[:, None].float())
    probe_hd95, floor_hd95 = {}, {}
    for key, probe in probes.items():
        level = level_of(key)
        scores = BoundaryMetrics(2)
        scores.update(probe(feats[key], masks.shape[-2:]).argmax(1), masks)
        probe_hd95[key] = float(scores.compute()["hd95"])
        if level not in floor_hd95:
            floor = BoundaryMetrics(2)
            floor.update(resolution_floor(masks, level, 2), masks)
            floor_hd95[level] = float(floor.compute()["hd95"])
        assert probe_hd95[key] >= floor_hd95[level] - 0.25, (key, probe_hd95[key], floor_hd95[level])
    assert probe_hd95["enc3"] > probe_hd95["enc2"] > probe_hd95["enc1"]  # coarser features place boundaries worse


def test_zero_ablation_equals_the_architecture_without_that_skip_with_the_same_weights():
    """With bias-free convolutions, a zeroed skip adds nothing to its decoder block: the output equals that of a
    U-Net built without the skip that carries the same weights minus the skip's input slice. Trained models still
    differ (the no-skip model learned without that input), which is why both ablations are reported."""
    torch.manual_seed(0)
    full = UNet(1, 2, depth=3, base_channels=4, skips="all").eval()
    cut = UNet(1, 2, depth=3, base_channels=4, skips=[0, 2]).eval()
    state = full.state_dict()
    key = "decoder.1.conv.layers.0.weight"  # decoder[i] is level i
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
    run = dict.fromkeys(COLUMNS[:8], 0)
    row = {"source": "model", "metric": "dice", "class": "mean", "value": 1.0, "std": 0.0, "n": 1, "empty_rate": 0}
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


@pytest.mark.slow
def test_eval_cli_on_a_trained_run(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run = work / "run"
    run_cli("unetlab-train", *TINY, f"hydra.run.dir={run}", cwd=work)
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    out = run_cli("unetlab-eval", f"ckpt={ckpt}", "eval.probe_steps=5", "data.test_size=8", cwd=work)
    assert "wrote" in out.stdout and (run / "results.csv").is_file()
    rows = [r for r in read_results(run / "results.csv") if not r["metric"].endswith("_nonempty")]
    rows = [r for r in rows if not is_objects(r["source"])]  # their n counts objects
    assert {r["n"] for r in rows} == {8}  # the data override reached the run config
    assert sorted(p.name for p in work.iterdir()) == ["run"]  # nothing littered in the working directory
    bad = run_cli("unetlab-eval", f"ckpt={ckpt}", "model.depth=3", cwd=work, check=False)
    assert bad.returncode != 0 and "model.depth=3 does not match the checkpoint" in bad.stderr
    bad = run_cli("unetlab-eval", f"ckpt={ckpt}", "eval.ablate_modes=[blur]", cwd=work, check=False)
    assert bad.returncode != 0 and "unknown skip ablation mode 'blur'" in bad.stderr


def test_evaluation_at_the_end_of_training_logs_into_the_training_wandb_run(tmp_path):
    """A grid job (train, then evaluate): one offline wandb run per run dir, holding both the training curves and the
    eval table (a second init and finish per model cost ~2.5 s)."""
    run_dir = tmp_path / "run"
    cfg = compose_train(run_dir, "logger=wandb", "logger.mode=offline", "+eval.probe_steps=3", "+eval.floors=false")
    train_then_evaluate(cfg)
    assert (run_dir / "results.csv").is_file()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list((runs[0] / "files" / "media" / "table" / "eval").glob("results_*.table.json"))
    records = finished_records(next(runs[0].glob("run-*.wandb")))  # once wandb's service has written them all
    logged = {item.key or "/".join(item.nested_key) for record in records
              if record.WhichOneof("record_type") == "history" for item in record.history.item}  # fmt: skip
    assert "val/dice" in logged and any(key.startswith("eval/results") for key in logged)


@pytest.mark.parametrize("classes", [2, 3])
def test_probe_loss_is_the_networks_loss(classes):
    """NetworkLoss (one log-softmax and a gather; for two classes the logit difference alone) equals the training
    loss: cross-entropy + soft_dice_loss, with ignored pixels, in value and gradient."""
    from unetlab.evaluation.probes import NetworkLoss
    from unetlab.training.task import soft_dice_loss

    torch.manual_seed(0)
    target = torch.randint(0, classes, (4, 16, 16))
    target[:, :2] = 255
    logits = torch.randn(4, classes, 16, 16, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=255) + soft_dice_loss(logits, target)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    loss = NetworkLoss(target, classes)(logits)
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_label_maps_hold_the_first_test_images_of_every_source(trained):
    """label_maps.npz: truth, model, every probe and floor of the first eval.picture_images test images; the model's
    map is the network's argmax and the truth the test mask."""
    from unetlab.runs.label_maps import read_label_maps

    cfg, run_dir = trained
    run_eval(run_dir / "checkpoints" / "last.ckpt", quick_eval(ablate_modes=[], picture_images=3), cfg=cfg)
    maps = read_label_maps(run_dir / "label_maps.npz")
    assert len(maps) == 3
    keys = ("enc0", "enc1", "enc2", "dec1", "dec0")
    assert set(maps[0]) == {"image", "truth", "model", *(f"probe/{k}" for k in keys), *(f"floor/{i}" for i in range(3))}
    run = load_run(run_dir / "checkpoints" / "last.ckpt")
    test = run.datamodule.datasets["test"]
    with torch.no_grad():
        expected = run.net.eval()(torch.stack([test[i][0] for i in range(3)])).argmax(dim=1)
    for i in range(3):
        assert (maps[i]["truth"] == test[i][1].numpy()).all()
        assert (maps[i]["model"] == expected[i].numpy()).all()


def test_the_data_unit_goes_through_train_eval_and_report(tmp_path):
    """data.spacing / data.unit: training logs, results.csv (unit column), the per-image values (measured with the
    pixel size) and the report's tables all use them."""
    from unetlab.metrics import functional
    from unetlab.report import make_report
    from unetlab.runs.label_maps import read_label_maps, read_spacing

    run_dir = tmp_path / "runs" / "run"
    cfg = compose_train(run_dir, "data.spacing=[0.5,0.25]", "data.unit=um", "+eval.probe_steps=3")
    train_then_evaluate(cfg)
    rows = read_results(run_dir / "results.csv")
    units = {(r["metric"] in DISTANCE_METRICS or r["metric"].endswith("_nonempty")): r["unit"] for r in rows}
    assert units == {True: "um", False: ""}
    assert read_spacing(run_dir / "label_maps.npz") == (0.5, 0.25)
    maps = read_label_maps(run_dir / "label_maps.npz")
    values = read_per_image(run_dir / "per_image.npz")["model"]
    for i, image in enumerate(maps[:4]):
        pred, truth = torch.from_numpy(image["model"] == 1), torch.from_numpy(image["truth"] == 1)
        if pred.any() and truth.any():
            expected = functional.hd95(pred[None], truth[None], spacing=(0.5, 0.25))
            assert float(values[i, 0, METRICS.index("hd95")]) == pytest.approx(float(expected[0]), rel=1e-5)
    # object sizes and tolerances in the unit: the px bin edges times sqrt(0.5 * 0.25)
    sources = {r["source"] for r in rows}
    assert {"objects/0-1.41", "objects/11.3+", "floor/0/objects/2.83-5.66"} <= sources
    assert {r["metric"] for r in rows if r["source"] == "model"} >= {"nsd@0.5", "bf1@8"}
    make_report([tmp_path / "runs"], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "hd95 (um)" in text and "hd95 (px)" not in text
    assert "| 2.83-5.66 um |" in text and "τ = 0.5 um" in text  # the objects' and the tolerances' tables
    assert (tmp_path / "report" / "report_detection_by_size.png").is_file()
    assert (tmp_path / "report" / "report_nsd_vs_tolerance.png").is_file()
