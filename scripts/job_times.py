"""Training and evaluation seconds of every run of a main job, read from each run's ``train.log``.

    python scripts/job_times.py ablate/quick/runs [--json bench_results/job_times.json]

Training: the last epoch line's time since the fit began (``EpochSummary``); evaluation: the sum of the evaluation's
phase lines (``[unetlab] <run> eval: ... (<s> s)``, from loading the run to the last row). Prints one line per run,
then the mean per model kind (depth and skip set, over seeds), and saves the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

EPOCH = re.compile(r"\] \S+ epoch \d+/\d+: .*\((\d+) s\)")
EVAL = re.compile(r"\] \S+ eval: .*\(([\d.]+) s\)")


def times(log: Path) -> tuple[float, float] | None:
    """(training s, evaluation s) of one run, or None when its log lacks either."""
    text = log.read_text()
    epochs, phases = EPOCH.findall(text), EVAL.findall(text)
    if not epochs or not phases:
        return None
    return float(epochs[-1]), sum(float(s) for s in phases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the main job's runs folder, e.g. ablate/quick/runs")
    parser.add_argument("--json", type=Path, default=Path("bench_results/job_times.json"))
    args = parser.parse_args()
    runs, kinds = {}, {}
    for log in sorted(args.runs.glob("*/train.log")):
        found = times(log)
        if found is None:
            continue
        train, evaluation = found
        name = log.parent.name
        runs[name] = {"train_s": train, "eval_s": evaluation, "eval_over_train": evaluation / train}
        print(f"{name:28s} train {train:5.0f} s   eval {evaluation:5.1f} s   eval/train {evaluation / train:.2f}")
        kinds.setdefault(name.rsplit("-seed", 1)[0], []).append((train, evaluation))
    print()
    summary = {}
    for kind, values in sorted(kinds.items()):
        train = statistics.mean(v[0] for v in values)
        evaluation = statistics.mean(v[1] for v in values)
        ratio = evaluation / train
        summary[kind] = {"runs": len(values), "train_s": train, "eval_s": evaluation, "eval_over_train": ratio}
        print(f"{kind:20s} {len(values)} runs   train {train:5.1f} s   eval {evaluation:5.1f} s   eval/train "
              f"{evaluation / train:.2f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs, "by_model": summary}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
