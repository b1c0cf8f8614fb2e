"""``experiment=zoo``: the grid per architecture, each with its own skip levels, run directories named by it, and the
report's comparison of architectures (where they agree and where they differ, from paired intervals)."""

from __future__ import annotations

from unetlab.grid.run import plan_sweeps, run_dir_name, sweep_subdir
from unetlab.report.architectures import sentences
from unetlab.report.collect import Model
from unetlab.report.intervals import Diff


def test_the_grid_is_repeated_per_architecture_with_its_own_single_skips():
    sweeps = plan_sweeps([4], ["all", "none"], ["single"], [0, 1], models={"unet": (0, 1, 2, 3), "smp_unet": (1, 2, 3)})
    assert sweeps == [
        ["model=unet", "model.depth=4", "model.skips=[0],[1],[2],[3]", "seed=0,1"],
        ["model=unet", "model.depth=4", "model.skips=all,none", "seed=0,1"],
        ["model=smp_unet", "model.depth=4", "model.skips=[1],[2],[3]", "seed=0,1"],  # smp has no level-0 skip
        ["model=smp_unet", "model.depth=4", "model.skips=all,none", "seed=0,1"],
    ]
    assert run_dir_name(4, "all", 0, model="smp_unet") == "d4-s0_1_2_3-seed0-smp_unet"
    assert sweep_subdir([], models=True).endswith("-seed${seed}-${hydra:runtime.choices.model}")


def test_all_means_every_skip_the_architecture_has():
    assert Model("shapes", "64", 4, "1,2,3", "smp_unet").skip_label == "all"
    assert Model("shapes", "64", 4, "1,2,3", "unet").skip_label == "1,2,3"
    assert Model("shapes", "64", 4, "0,1,2,3", "nnunet_plainconv").described == (
        "the depth-4 all-skip nnU-Net PlainConvUNet"
    )


def test_the_comparison_says_where_architectures_agree_and_differ():
    lower, level = Diff(-3.0, -4.0, -2.0, True, True), Diff(-0.1, -0.5, 0.3, False, True)
    agree = sentences({"U-Net": lower, "smp Unet": lower}, {"U-Net": 1, "smp Unet": 1})
    assert agree == [
        "All architectures agree: the skips lower hd95 significantly in U-Net, smp Unet (all − none at the deepest "
        "depth, paired).",
        "In every architecture the skip at level 1 has the lowest φ (it lowers hd95 most).",
    ]
    differ = sentences({"U-Net": lower, "MONAI DynUNet": level}, {"U-Net": 0, "MONAI DynUNet": None})
    assert "make no significant difference in MONAI DynUNet" in differ[0] and differ[0].startswith("The architectures")
    assert differ[1] == (
        "The skip that lowers hd95 most (lowest φ, significantly below 0): level 0 in U-Net; in MONAI DynUNet no "
        "skip's φ is significantly below 0."
    )
