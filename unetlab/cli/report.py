"""``unetlab-report DIR...``: tables, plots and findings from every results.csv under the folders.

Hydra has no positional arguments, so ``main`` first turns the bare ones into ``report.dirs=[...]``:
``unetlab-report ablate/quick other/ report.wandb=true`` is ``unetlab-report 'report.dirs=[ablate/quick,other/]'
report.wandb=true``. Options that take a value (``--cfg job``, ``-cn report``) keep it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from unetlab.cli import CONFIG_PATH, register_schema, run_app, task_errors
from unetlab.report.options import ReportOptions

register_schema("report", ReportOptions)

# Hydra options followed by a value of their own, which is not a folder.
VALUE_OPTIONS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
                 "-cd", "--experimental-rerun"}  # fmt: skip
INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


def quote(path: str) -> str:
    """A Hydra override string literal. Hydra unescapes only backslashes before a quote or the closing quote, so
    only those are doubled; then each quote is escaped."""
    path = re.sub(r"(\\+)(?='|$)", lambda match: match.group(1) * 2, path)
    return "'" + path.replace("'", "\\'") + "'"


def dirs_to_override(argv: list[str]) -> list[str]:
    """``[prog, a, b, key=v]`` -> ``[prog, key=v, "report.dirs=['a','b']"]``: bare arguments are folders."""
    rest, dirs = [argv[0]], []
    index = 1
    while index < len(argv):
        arg, previous = argv[index], argv[index - 1]
        if arg in VALUE_OPTIONS and index + 1 < len(argv):
            rest += argv[index : index + 2]
            index += 2
            continue
        override = "=" in arg or arg.startswith(("-", "~"))
        info_topic = previous in ("--info", "-i") and arg in INFO_TOPICS
        (rest if override or info_topic else dirs).append(arg)
        index += 1
    if dirs:
        if any(arg.lstrip("+").startswith("report.dirs=") for arg in rest):
            raise ValueError(
                f"give the folders either as arguments ({' '.join(dirs)}) or as report.dirs=[...], not both"
            )
        rest.append(f"report.dirs=[{','.join(quote(d) for d in dirs)}]")
    return rest


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="report")
def _main(cfg: DictConfig) -> None:
    from unetlab.report import make_report

    if OmegaConf.is_missing(cfg.report, "dirs"):
        sys.exit("unetlab-report: error: name the folders to read: unetlab-report DIR... (or report.dirs=[a,b])")
    with task_errors("unetlab-report"):  # ReportError is a ValueError
        options = OmegaConf.to_object(cfg.report)  # checked once: types by Hydra, values by __post_init__
        html = make_report(
            [Path(d) for d in options.dirs],
            out_dir=options.out_dir,
            log_wandb=options.wandb,
            wandb_mode=options.wandb_mode,
            project=options.project,
            group=options.group,
        )
    print(f"[unetlab] wrote {html.with_suffix('.md')} and {html} (plots beside them)")


def main() -> None:
    run_app("unetlab-report", _main, rewrite_dirs)


def rewrite_dirs() -> None:
    """The bare folder arguments as ``report.dirs=[...]`` (ValueError: folders given both ways)."""
    sys.argv = dirs_to_override(sys.argv)


if __name__ == "__main__":
    main()
