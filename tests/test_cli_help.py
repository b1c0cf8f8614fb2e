"""Every command explains itself: --help opens with what it does, its main keys and an example, quickly."""

import subprocess
import sys

import pytest

from tests.helpers import run_cli

COMMANDS = ("unetlab-train", "unetlab-eval", "unetlab-viz", "unetlab-report", "unetlab-ablate")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_says_what_the_command_does(command, tmp_path):
    out = run_cli(command, "--help", cwd=tmp_path).stdout
    first = out.splitlines()[0]
    assert first.startswith(command) and "powered by Hydra" not in out
    assert "Example" in out and "== Config ==" in out


def test_the_commands_import_no_torch_before_they_run():
    """--help (and Hydra's config composition) needs no torch or Lightning: they load inside each command's main,
    which keeps --help near a second instead of several."""
    modules = ", ".join(f"unetlab.cli.{name}" for name in ("train", "eval", "viz", "report", "ablate"))
    code = f"import sys, {modules}; heavy = [m for m in ('torch', 'lightning') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
