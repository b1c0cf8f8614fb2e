import re

import pytest

from tests.helpers import compose_train
from unetlab.training.train import train

LINE = re.compile(
    r"\[unetlab\] run epoch (\d)/2: train/loss ([\d.]+), val/dice ([\d.]+), val/hd95 ([\d.]+) px \(\d+ s\)"
)


def test_epoch_lines_show_this_epochs_numbers(tmp_path, capsys):
    # TINY turns the progress bar off, so EpochSummary prints; two epochs, so a line holding the previous
    # epoch's numbers (the order of Lightning's hooks) would not match the final metrics.
    metrics = train(compose_train(tmp_path / "run", "trainer.max_epochs=2", "logger=none", "eval=null"))
    lines = [LINE.fullmatch(line) for line in capsys.readouterr().out.splitlines() if line.startswith("[unetlab] run ")]
    assert [m.group(1) for m in lines if m] == ["1", "2"], lines
    last = lines[-1]
    assert float(last.group(3)) == pytest.approx(metrics["val/dice"], abs=5e-4)
    assert float(last.group(4)) == pytest.approx(metrics["val/hd95"], abs=5e-4)
    assert float(lines[0].group(2)) != float(last.group(2))  # each line averages its own epoch's losses


def test_silent_with_a_progress_bar(tmp_path, capsys):
    train(compose_train(tmp_path / "run", "trainer.enable_progress_bar=true", "logger=none", "eval=null"))
    assert "[unetlab] run epoch" not in capsys.readouterr().out
