"""Behaviour that had no test: the soft Dice loss, the sweep/ddp refusal, checkpoint/model mismatches, class counts,
the lowpass size check and channels-last numerics."""

from __future__ import annotations

import copy
import re
from functools import partial

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from tests.helpers import CONFIG_DIR, compose_train
from unetlab.models.skip_ablation import ablate_skip
from unetlab.models.unet import UNet
from unetlab.runs.checkpoint import load_run
from unetlab.training.task import SegmentationTask, soft_dice_loss
from unetlab.training.train import check_strategy, train

IGNORE = 255


# --- soft_dice_loss ----------------------------------------------------------------------------------------------


def labels_and_logits(seed: int = 0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A (2, 6, 5) label map with about a quarter of its pixels at the ignore index, and random logits for it."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, (2, 6, 5), generator=generator)
    target[torch.rand(target.shape, generator=generator) < 0.25] = IGNORE
    assert (target == IGNORE).any() and (target != IGNORE).any()
    return target, torch.randn(2, classes, 6, 5, generator=generator)


def test_soft_dice_ignores_pixels_labelled_255():
    target, logits = labels_and_logits()
    loss = soft_dice_loss(logits, target)
    ignored = target == IGNORE
    # The same loss with the ignored pixels removed: the valid pixels as one (1, K, 1, N) image (the loss pools
    # over batch and space, so their arrangement does not matter).
    valid_logits = logits.permute(1, 0, 2, 3)[:, ~ignored].reshape(1, logits.shape[1], 1, -1)
    valid_target = target[~ignored].reshape(1, 1, -1)
    assert torch.allclose(loss, soft_dice_loss(valid_logits, valid_target), atol=1e-6)
    # Whatever the network says at ignored pixels changes nothing.
    scrambled = torch.where(ignored.unsqueeze(1), torch.randn_like(logits) * 10, logits)
    assert torch.allclose(loss, soft_dice_loss(scrambled, target), atol=1e-6)
    # ...while the same change at valid pixels does change it (the comparison above can fail).
    changed = torch.where(ignored.unsqueeze(1), logits, torch.randn_like(logits) * 10)
    assert not torch.allclose(loss, soft_dice_loss(changed, target), atol=1e-3)


@pytest.mark.parametrize("with_ignored", [False, True])
def test_soft_dice_of_a_perfect_prediction_is_zero(with_ignored):
    target, _ = labels_and_logits(seed=1)
    if not with_ignored:
        target[target == IGNORE] = 0
    logits = 40.0 * torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = logits.roll(1, dims=1)  # every valid pixel predicted as another class
    assert soft_dice_loss(wrong, target).item() > 0.5


@pytest.mark.parametrize(("kwargs", "eps"), [({}, 1.0), ({"eps": 0.0}, 0.0)])  # the default eps is 1
def test_soft_dice_is_one_minus_the_mean_foreground_dice_by_hand(kwargs, eps):
    # One 2x2 image, classes 0 (background), 1 and 2; the bottom-right pixel is ignored.
    target = torch.tensor([[[0, 1], [2, IGNORE]]])
    probs = torch.tensor(
        [
            [[0.5, 0.2], [0.1, 0.1]],  # class 0 at each pixel
            [[0.25, 0.6], [0.3, 0.1]],  # class 1
            [[0.25, 0.2], [0.6, 0.8]],  # class 2
        ]
    )
    logits = probs.log().unsqueeze(0)  # softmax(log p) = p, as each pixel's p sums to 1
    # Over the three valid pixels: class 1 has intersection 0.6 (pixel (0,1)), probability mass 0.25 + 0.6 + 0.3
    # and one labelled pixel; class 2 has intersection 0.6 (pixel (1,0)), mass 0.25 + 0.2 + 0.6, one pixel.
    dice_1 = (2 * 0.6 + eps) / (0.25 + 0.6 + 0.3 + 1 + eps)
    dice_2 = (2 * 0.6 + eps) / (0.25 + 0.2 + 0.6 + 1 + eps)
    expected = 1 - (dice_1 + dice_2) / 2  # background left out
    loss = soft_dice_loss(logits, target, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


# --- trainer.strategy=ddp in a -m sweep --------------------------------------------------------------------------


@pytest.fixture
def in_sweep():
    """Hydra's config as a ``-m`` job sees it (hydra.mode=MULTIRUN), removed again afterwards."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        hydra_cfg = compose("train", overrides=["hydra.mode=MULTIRUN"], return_hydra_config=True)
    HydraConfig.instance().set_config(hydra_cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = None
    assert not HydraConfig.initialized()


DDP_ON_TWO_CPUS = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
SWEEP_MESSAGE = "trainer.strategy=ddp starts its other processes by re-running the command line, which inside a -m"


def test_ddp_is_refused_inside_a_sweep(tmp_path, in_sweep, monkeypatch):
    def fit(*args, **kwargs):  # were the check gone, fit would start a second pytest through the ddp launcher
        raise AssertionError("trainer.fit was reached: ddp in a sweep was not refused")

    monkeypatch.setattr(L.Trainer, "fit", fit)
    with pytest.raises(ValueError, match=re.escape(SWEEP_MESSAGE)) as info:
        train(compose_train(tmp_path / "run", *DDP_ON_TWO_CPUS))
    assert "trainer.strategy=ddp_spawn" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("overrides", "sweep"),
    [
        (DDP_ON_TWO_CPUS, False),  # a plain run may re-run its command line
        (["trainer.strategy=ddp_spawn", "trainer.devices=2", "trainer.accelerator=cpu"], True),  # spawns, no re-run
        (["trainer.strategy=ddp", "trainer.devices=1", "trainer.accelerator=cpu"], True),  # one process only
    ],
    ids=["ddp-plain-run", "ddp_spawn-sweep", "ddp-1-device-sweep"],
)
def test_other_strategies_and_plain_runs_pass_the_sweep_check(tmp_path, overrides, sweep, request):
    if sweep:
        request.getfixturevalue("in_sweep")
    trainer = instantiate(compose_train(tmp_path / "run", *overrides).trainer, logger=False)
    check_strategy(trainer, [])  # raises nothing
    ddp = instantiate(compose_train(tmp_path / "run", *DDP_ON_TWO_CPUS).trainer, logger=False)
    if sweep:  # the same check, in the same state, does refuse ddp on two devices
        with pytest.raises(ValueError, match=re.escape(SWEEP_MESSAGE)):
            check_strategy(ddp, [])
    else:
        check_strategy(ddp, [])


# --- checkpoint of one architecture, config of another -----------------------------------------------------------


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """last.ckpt of a tiny run (depth 2, base 4, all skips)."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(compose_train(run))
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    ("model", "detail"),
    [
        ("model.base_channels=8", r"\(.*size mismatch for .*\)"),  # same modules, other tensor shapes
        ("model.skips=none", r"\(.*size mismatch for .*\)"),  # decoders without skip channels
        ("model.depth=3", r"\(missing \['.*'\]\.\.\., unexpected \[\]\.\.\.\)"),  # a level the weights lack
        ("model.depth=1", r"\(missing \[\]\.\.\., unexpected \['.*'\]\.\.\.\)"),  # weights of a level it lacks
    ],
    ids=["wider", "no-skips", "deeper", "shallower"],
)
def test_checkpoint_of_another_architecture_is_refused(trained_checkpoint, tmp_path, model, detail):
    assert load_run(trained_checkpoint, cfg=compose_train(tmp_path / "same")).net.depth == 2  # its own config loads
    cfg = compose_train(tmp_path / "other", model)
    message = re.escape(f"checkpoint {trained_checkpoint} does not fit the configured model ") + detail
    with pytest.raises(ValueError, match=message):
        load_run(trained_checkpoint, cfg=cfg)


# --- class counts ------------------------------------------------------------------------------------------------


def test_fewer_model_classes_than_data_classes_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match=re.escape("model.num_classes=1 is smaller than data.num_classes=2")):
        train(compose_train(tmp_path / "run", "model.num_classes=1"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(ValueError, match=re.escape("model.num_classes=4 is smaller than data.num_classes=5")):
        train(compose_train(tmp_path / "kinds", "model.num_classes=4", "data.num_classes=5"))  # one class per kind


# --- lowpass:k on a small skip -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "mode", "factor"), [((4, 4), "lowpass:3", 8), ((16, 2), "lowpass:2", 4)])
def test_lowpass_larger_than_the_skip_names_the_sizes(shape, mode, factor):
    skip = torch.randn(1, 2, *shape)
    message = f"{mode} pools by {factor} px but this skip is only {shape} px"
    with pytest.raises(ValueError, match=re.escape(message)):
        ablate_skip(skip, mode)


def test_lowpass_as_large_as_the_skip_averages_it():
    skip = torch.randn(2, 3, 4, 4)
    out = ablate_skip(skip, "lowpass:2")
    assert out.shape == skip.shape
    assert torch.allclose(out, skip.mean(dim=(2, 3), keepdim=True).expand_as(skip), atol=1e-6)


# --- channels-last -----------------------------------------------------------------------------------------------


def test_channels_last_gives_the_same_numbers():
    torch.manual_seed(0)
    net = UNet(in_channels=3, num_classes=3, depth=2, base_channels=4)
    tasks = {
        layout: SegmentationTask(copy.deepcopy(net), optimizer=partial(torch.optim.AdamW), channels_last=layout)
        for layout in (True, False)
    }
    weight = {layout: task.net.encoder[0].layers[0].weight for layout, task in tasks.items()}
    assert weight[True].is_contiguous(memory_format=torch.channels_last)  # the two really differ in layout
    assert not weight[False].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(weight[True], weight[False])

    images = torch.rand(2, 3, 32, 32)
    masks = torch.randint(0, 3, (2, 32, 32))
    masks[:, :4] = IGNORE
    for train_mode in (False, True):  # eval (running BatchNorm statistics) and train (batch statistics)
        out = {}
        for layout, task in tasks.items():
            task.train(train_mode)
            task.zero_grad()
            logits = task(images)
            loss = task.loss(logits, masks)
            loss.backward()
            out[layout] = (logits, loss, task.net.encoder[0].layers[0].weight.grad.clone())
        (logits_cl, loss_cl, grad_cl), (logits, loss, grad) = out[True], out[False]
        assert logits_cl.shape == logits.shape == (2, 3, 32, 32)
        assert torch.allclose(logits_cl, logits, rtol=1e-5, atol=1e-5)
        assert torch.allclose(loss_cl, loss, rtol=1e-5, atol=1e-6)
        assert torch.allclose(grad_cl, grad, rtol=1e-4, atol=1e-5)


def test_soft_dice_loss_of_stacked_predictions_is_each_ones_loss():
    """The probes score all their keys' predictions of one batch in one call: (P, B, K, H, W) -> (P,)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 3, 5, 4, generator=generator)
    target = torch.randint(0, 3, (2, 5, 4), generator=generator)
    target[0, 0, 0] = 255
    stacked = soft_dice_loss(logits, target)
    assert stacked.shape == (3,)
    torch.testing.assert_close(stacked, torch.stack([soft_dice_loss(one, target) for one in logits]))


def test_precision_auto_is_resolved_and_saved(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from unetlab.training import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "32-true"
    assert precision.resolve_precision("16-mixed", "cpu") == "16-mixed"  # anything else is Lightning's to check
    train(compose_train(tmp_path / "run", "trainer.precision=auto"))
    assert OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").trainer.precision == "32-true"
