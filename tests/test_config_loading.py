"""How unetlab-eval and unetlab-viz build their configs: the ``eval.*`` / ``viz.*`` schemas, the run keys of the
command line merged into the run's saved config (``load_config``), and whether a run logs to wandb."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import unetlab.cli.eval  # noqa: F401  (registers eval_schema)
import unetlab.cli.viz  # noqa: F401  (registers viz_schema)
from tests.helpers import CONFIG_DIR, compose_train
from unetlab.cli import run_keys
from unetlab.evaluation.evaluate import EvalOptions
from unetlab.explain.viz import VizOptions
from unetlab.runs.checkpoint import load_config
from unetlab.runs.wandb_job import uses_wandb


def compose_app(name: str, *overrides: str):
    """The config of ``unetlab-<name>`` as Hydra composes it (run keys already turned into ``+data...``)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(name, overrides=["ckpt=x.ckpt", *overrides])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A depth-3, all-skip run dir: saved config and a checkpoint file (``load_config`` reads only the config)."""
    run_dir = tmp_path_factory.mktemp("config") / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_train(run_dir, "model.depth=3", "model.skips=all"), run_dir / ".hydra" / "config.yaml")
    (run_dir / "checkpoints").mkdir()
    path = run_dir / "checkpoints" / "last.ckpt"
    path.write_bytes(b"")
    return path


def test_schema_defaults_are_the_composed_defaults():
    assert OmegaConf.to_object(compose_app("eval").eval) == EvalOptions()
    assert OmegaConf.to_object(compose_app("viz").viz) == VizOptions()
    assert OmegaConf.to_object(compose_app("eval", "eval.probe_steps=5").eval) == EvalOptions(probe_steps=5)


def test_schema_types_are_checked_as_hydra_composes():
    with pytest.raises(ConfigCompositionException, match="eval.probe_steps=abc"):
        compose_app("eval", "eval.probe_steps=abc")
    with pytest.raises(ConfigCompositionException, match="viz.erf_images=1.5"):
        compose_app("viz", "viz.erf_images=1.5")
    assert compose_app("eval", "eval.tolerance=3").eval.tolerance == 3.0  # an integer is a number


def test_command_line_run_keys_merge_into_the_saved_config(ckpt):
    cfg = compose_app("eval", "+data.test_size=8", "+model.skips=[0,1,2]", "eval.probe_steps=5")
    keys = run_keys(cfg)
    assert OmegaConf.to_container(keys) == {"data": {"test_size": 8}, "model": {"skips": [0, 1, 2]}}
    run_cfg = load_config(ckpt, keys)
    assert run_cfg.data.test_size == 8  # a value, not the string "8"
    assert run_cfg.data.image_size == 32  # the rest of the saved data node is kept
    assert run_cfg.paths.output_dir == str(ckpt.parent.parent)
    assert "eval" not in keys and run_cfg.eval is None  # eval.* stays with the app


@pytest.mark.parametrize("skips", [[0, 1, 2], "0,1,2", "all", [2, 1, 0]])
def test_the_saved_skip_set_given_another_way_is_accepted(ckpt, skips):
    cfg = load_config(ckpt, {"model": {"skips": skips, "depth": 3}})
    assert cfg.model.depth == 3


@pytest.mark.parametrize(
    ("model", "given", "saved"),
    [
        ({"skips": [0, 1]}, "model.skips=[0, 1]", "model.skips=all"),
        ({"skips": [0, 1, 2, 3]}, "model.skips=[0, 1, 2, 3]", "model.skips=all"),  # a level depth 3 lacks
        ({"skips": "none"}, "model.skips=none", "model.skips=all"),
        ({"depth": 4}, "model.depth=4", "model.depth=3"),
    ],
)
def test_a_model_key_the_checkpoint_does_not_have_is_refused(ckpt, model, given, saved):
    with pytest.raises(ValueError) as err:
        load_config(ckpt, {"model": model})
    assert str(err.value) == (
        f"{given} does not match the checkpoint {ckpt} (trained with {saved}); model.* keys are fixed by the weights"
    )


@pytest.mark.parametrize(("logger", "expected"), [("wandb", True), ("csv", False), ("none", False)])
def test_uses_wandb_follows_the_logger(tmp_path, logger, expected):
    assert uses_wandb(compose_train(tmp_path, f"logger={logger}")) is expected
