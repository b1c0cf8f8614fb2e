"""The report's figures as PNGs (matplotlib, no pyplot state: each figure is built and saved on its own).

Each function takes the seed-averaged ``Results`` of one setting, writes one PNG and returns its path, or
returns None when the results hold nothing to draw. Error bars and bands are the 95 % intervals of the tables
(two-level bootstrap over seeds and test images, ``collect.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from unetlab.metrics.functional import DISTANCE_METRICS
from unetlab.report.collect import Results, Stat, skip_order, skip_set_name
from unetlab.report.queries import (
    LAYER_METRICS,
    ablation_modes,
    by_depth,
    by_tolerance,
    detection_by_size,
    floor_detection_by_size,
    layer_objects,
    object_bins,
    params_by_depth,
    probe_panels,
    shapley,
    shifts,
    susceptibility,
    tolerances,
)
from unetlab.report.tables import BOUNDARY_METRICS, metric_label

DPI = 110
FIXED_COLORS = {"all": "#1f77b4", "none": "#d62728"}
OTHER_COLORS = ["#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
OTHER_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">", "p", "h"]
LEVEL_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#17becf"]


def style(label: str, index: int) -> dict:
    """Line style of a skip set: fixed colours for all/none, cycling colours and markers for other sets."""
    if label in FIXED_COLORS:
        # different markers keep both visible where the two lines coincide
        marker = "o" if label == "all" else "s"
        return {"color": FIXED_COLORS[label], "marker": marker, "linewidth": 2.2, "markersize": 6}
    return {
        "color": OTHER_COLORS[index % len(OTHER_COLORS)],
        "marker": OTHER_MARKERS[index % len(OTHER_MARKERS)],
        "linewidth": 1.2,
        "markersize": 6,
    }


MAX_NAMED_SETS = 5  # more "other" skip sets than this are drawn as one grey group


def interval_bars(stats: list[Stat]) -> list[list[float]] | None:
    """Asymmetric error bars [below, above] from the intervals; None where no stat has one."""
    below = [0.0 if math.isnan(s.low) else max(s.mean - s.low, 0.0) for s in stats]
    above = [0.0 if math.isnan(s.high) else max(s.high - s.mean, 0.0) for s in stats]
    return [below, above] if any(below) or any(above) else None


def draw_by_depth(ax, series: dict[str, list[tuple[int, object]]], with_intervals: bool = True) -> None:
    """One line per skip set over depth; a set present at one depth only is a marker without a line.

    Sets other than all/none sit side by side around their depth; more than ``MAX_NAMED_SETS`` of them share one
    grey style and one legend entry (their numbers are in the table).
    """
    other_labels = [label for label in series if label not in FIXED_COLORS]
    grouped = len(other_labels) > MAX_NAMED_SETS
    for label, points in series.items():
        if label in FIXED_COLORS:
            kwargs, name = style(label, 0), skip_set_name(label)
        else:
            index = other_labels.index(label)
            kwargs, name = style(label, index), skip_set_name(label)
            if grouped:
                kwargs = {"color": "#8c8c8c", "marker": "o", "markersize": 4, "linewidth": 0.8, "alpha": 0.8}
                name = f"other skip sets ({len(other_labels)})" if index == 0 else None
        depths = [depth for depth, _ in points]
        if len(points) == 1 and label not in FIXED_COLORS:
            # sets trained at one depth sit side by side instead of on top of each other
            spread = 0.3 if grouped else 0.07 * (len(other_labels) - 1)
            position = other_labels.index(label) / max(1, len(other_labels) - 1) - 0.5
            depths = [depths[0] + spread * position]
        means = [getattr(stat, "mean", stat) for _, stat in points]
        bars = interval_bars([stat for _, stat in points]) if with_intervals else None
        linestyle = "-" if len(points) > 1 else "none"
        if bars is not None:
            capsize = 0 if grouped and label not in FIXED_COLORS else 3
            ax.errorbar(depths, means, yerr=bars, capsize=capsize, linestyle=linestyle, label=name, **kwargs)
        else:
            ax.plot(depths, means, linestyle=linestyle, label=name, **kwargs)
    grid_depths = sorted({depth for points in series.values() for depth, _ in points})
    ax.set_xticks(grid_depths)
    ax.set_xlim(grid_depths[0] - 0.4, grid_depths[-1] + 0.4)
    ax.set_xlabel("depth (number of down-samplings)")
    ax.grid(True, alpha=0.3)


def legend_below(fig: Figure, ax) -> float:
    """A legend under the panels; returns the figure fraction it takes."""
    handles, labels = ax.get_legend_handles_labels()
    ncol = min(len(labels), 5)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=10)
    rows = math.ceil(len(labels) / ncol)
    return 0.025 + 0.03 * rows


def legend_right(ax) -> None:
    """Outside the axes, so that it hides no point."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=10, borderaxespad=0)


def runs_note(series: dict) -> str:
    runs = {stat.runs for points in series.values() for _, stat in points}
    seeds = f"{min(runs)}–{max(runs)} seeds" if len(runs) > 1 else "1 seed" if runs == {1} else f"{runs.pop()} seeds"
    return f"error bars: 95 % interval over {seeds} and the test images"


def boundary_vs_depth(results: Results, path: Path) -> Path | None:
    """hd95, assd, nsd, bf1 of the model against depth, a line per skip set."""
    all_series = {metric: by_depth(results, metric) for metric in BOUNDARY_METRICS}
    all_series = {metric: series for metric, series in all_series.items() if series}
    if not all_series:
        return None
    fig = Figure(figsize=(11, 8.2), dpi=DPI)
    axes = fig.subplots(2, 2).ravel()
    for ax, (metric, series) in zip(axes, all_series.items(), strict=False):
        draw_by_depth(ax, series)
        better = "lower" if metric in DISTANCE_METRICS else "higher"
        ax.set_ylabel(metric_label(metric, results.unit))
        ax.set_title(f"{metric} ({better} is better)")
    for ax in axes[len(all_series) :]:
        ax.set_visible(False)
    first = next(iter(all_series.values()))
    fig.suptitle(f"Boundary error vs depth (test set, mean over classes; {runs_note(first)})", fontsize=13)
    bottom = legend_below(fig, axes[0])
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path)
    return path


def dice_vs_depth(results: Results, path: Path) -> Path | None:
    series = by_depth(results, "dice")
    if not series:
        return None
    fig = Figure(figsize=(9, 5), dpi=DPI)
    ax = fig.subplots()
    draw_by_depth(ax, series)
    ax.set_ylabel("dice")
    ax.set_title(f"Dice vs depth (higher is better; {runs_note(series)})")
    legend_right(ax)
    fig.tight_layout()
    fig.savefig(path)
    return path


def params_vs_depth(results: Results, path: Path) -> Path | None:
    series = params_by_depth(results)
    if not series:
        return None
    fig = Figure(figsize=(9, 5), dpi=DPI)
    ax = fig.subplots()
    draw_by_depth(ax, series, with_intervals=False)  # parameter counts are exact
    ax.set_yscale("log")
    ax.set_ylabel("trainable parameters (log scale)")
    ax.set_title("Parameter count vs depth")
    legend_right(ax)
    ax.grid(True, which="minor", alpha=0.1)
    fig.tight_layout()
    fig.savefig(path)
    return path


def probes_vs_floor(results: Results, path: Path, metric: str = "hd95") -> Path | None:
    """Probe error by feature key, one panel per depth, a line per model (skip set), the floor dashed."""
    panels = probe_panels(results, metric)
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(max(8.0, 4.6 * ncols), 4.0 * nrows + 0.8), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        x = list(range(len(panel.keys)))
        bottleneck = panel.keys.index(f"enc{panel.depth}")
        ax.axvspan(bottleneck - 0.5, bottleneck + 0.5, color="#eeeeee", zorder=0)
        others = 0
        for label, stats in panel.probes.items():
            kwargs = style(label, others)
            others += label not in ("all", "none")
            points = [(i, s) for i, s in zip(x, stats, strict=True) if s is not None and not math.isnan(s.mean)]
            if not points:
                continue
            ax.errorbar(
                [i for i, _ in points],
                [s.mean for _, s in points],
                yerr=interval_bars([s for _, s in points]),
                capsize=3,
                label=f"probe, {skip_set_name(label)}",
                **kwargs,
            )
        floor = [(i, f) for i, f in zip(x, panel.floor, strict=True) if f is not None]
        if floor:
            ax.plot(
                [i for i, _ in floor],
                [f.mean for _, f in floor],
                linestyle="--",
                color="black",
                marker="_",
                markersize=10,
                label="resolution floor",
            )
            band = [(i, f) for i, f in floor if not (math.isnan(f.low) or math.isnan(f.high))]
            if band:
                ax.fill_between([i for i, _ in band], [f.low for _, f in band], [f.high for _, f in band],
                                color="black", alpha=0.12, linewidth=0, label="floor, 95 % interval")  # fmt: skip
        ax.set_xticks(x, panel.keys, rotation=0 if len(x) <= 7 else 45)
        ax.set_xlabel("feature key (forward order; grey: bottleneck)")
        ax.set_ylabel(f"probe {metric_label(metric, results.unit)}")
        title = f"depth {panel.depth}"
        if panel.left_out:
            title += f" (all/none of {len(panel.left_out) + len(panel.probes)} skip sets)"
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=9, loc="upper left")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Linear probes on frozen features vs the resolution floor ({metric}, lower is better; "
        "bars and band: 95 % intervals)",
        fontsize=13,
    )
    fig.tight_layout()
    fig.savefig(path)
    return path


MAX_SHAPLEY_MODELS = 10  # beyond this only the all-skip models are drawn (the table has every model)


def shapley_bars(results: Results, path: Path, metrics: tuple[str, ...] = ("hd95", "dice")) -> Path | None:
    """A bar per kept skip level for every model with Shapley rows; a panel per (metric, ablation mode)."""
    # the leading mode (lowpass:1) first, each mode with all its metrics
    panels = {(metric, mode): shapley(results, mode, metric) for mode in ablation_modes(results) for metric in metrics}
    panels = {key: models for key, models in panels.items() if models}
    if not panels:
        return None
    subset_note = ""
    if max(len(models) for models in panels.values()) > MAX_SHAPLEY_MODELS:
        every = {key: [(m, v) for m, v in models if m.skip_label == "all"] for key, models in panels.items()}
        if any(every.values()):
            panels = {key: models for key, models in every.items() if models}
            subset_note = "; all-skip models only, every model is in the table"
    groups = max(len(models) for models in panels.values())
    max_levels = max(len(values) for models in panels.values() for _, values in models)
    width = min(14.0, max(7.0, 0.3 * groups * (max_levels + 1) + 2))
    fig = Figure(figsize=(width, 3.4 * len(panels) + 1.0), dpi=DPI)
    axes = fig.subplots(len(panels), 1, squeeze=False).ravel()
    bar_width = 0.8 / max_levels
    handles: dict[int, object] = {}
    for ax, ((metric, mode), models) in zip(axes, panels.items(), strict=True):
        for group, (_, values) in enumerate(models):
            for slot, (level, stat) in enumerate(sorted(values.items())):
                offset = (slot - (len(values) - 1) / 2) * bar_width
                bars = ax.bar(
                    group + offset,
                    stat.mean,
                    bar_width * 0.92,
                    yerr=interval_bars([stat]),
                    capsize=2,
                    color=LEVEL_COLORS[level % len(LEVEL_COLORS)],
                )
                handles.setdefault(level, bars)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(models)), [f"depth {m.depth}\n{m.skip_label}" for m, _ in models])
        ax.set_xlim(-0.6, len(models) - 0.4)
        unit = f" {results.unit}" if metric in DISTANCE_METRICS else ""
        sign = "negative = the skip lowers the error" if metric in DISTANCE_METRICS else "positive = the skip helps"
        ax.set_ylabel(f"φ ({metric}{unit})")
        ax.set_title(f"{metric}, {mode} ablation ({sign})", fontsize=11)
        ax.grid(True, axis="y", alpha=0.3)
    levels = sorted(handles)
    fig.legend([handles[level] for level in levels], [str(level) for level in levels], loc="lower center",
               ncol=len(levels), frameon=False, title="skip level", fontsize=10)  # fmt: skip
    title = "Shapley value of each kept skip"
    title += f" (test-time ablation, mean over classes; bars: 95 % intervals{subset_note})"
    if fig.get_figwidth() < 11:  # a narrow figure (few models): the title on two lines, not cut at both sides
        title = title.replace(" (", "\n(", 1)
    fig.suptitle(title, fontsize=13)
    top = (0.25 if "\n" not in title else 0.5) / fig.get_figheight()
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1 - top))
    fig.savefig(path)
    return path


DEPTH_COLORS = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b", "#000000"]  # depth 1..6, light to dark
MAX_MODEL_LINES = 10  # beyond this only the all- and no-skip models are drawn (the tables have every model)


def model_lines(series: dict) -> tuple[dict, str]:
    """``series`` (model -> values) cut to the all- and no-skip models when there are too many lines, and a note
    saying so."""
    if len(series) <= MAX_MODEL_LINES:
        return series, ""
    kept = {m: v for m, v in series.items() if m.skip_label in ("all", "none")}
    return (kept, "; all- and no-skip models only, every model is in the table") if kept else (series, "")


def model_style(model, others: list) -> dict:
    """A model's line: colour by depth (darker deeper), solid with all skips, dashed with none, thin and dotted with
    another skip set (its own marker)."""
    color = DEPTH_COLORS[min(model.depth, len(DEPTH_COLORS)) - 1]
    if model.skip_label == "all":
        return {"color": color, "linestyle": "-", "marker": "o", "linewidth": 2.0}
    if model.skip_label == "none":
        return {"color": color, "linestyle": "--", "marker": "s", "linewidth": 2.0}
    index = others.index(model)
    return {"color": OTHER_COLORS[index % len(OTHER_COLORS)], "linestyle": ":", "linewidth": 1.2,
            "marker": OTHER_MARKERS[index % len(OTHER_MARKERS)]}  # fmt: skip


def draw_models(ax, x: list[float], series: dict) -> None:
    """A line per model over ``x`` with its 95 % interval bars; points without a number are left out."""
    others = [m for m in series if m.skip_label not in ("all", "none")]
    for model, stats in series.items():
        points = [(xi, s) for xi, s in zip(x, stats, strict=True) if s is not None and not math.isnan(s.mean)]
        if points:
            ax.errorbar([xi for xi, _ in points], [s.mean for _, s in points],
                        yerr=interval_bars([s for _, s in points]), capsize=2, markersize=5, label=model.legend,
                        **model_style(model, others))  # fmt: skip


def detection_vs_size(results: Results, path: Path) -> Path | None:
    """Fraction of ground-truth objects detected (IoU >= 0.5) by size bin: a line per model, and beside it the
    resolution floor of every level."""
    bins = object_bins(results)
    series, note = model_lines(detection_by_size(results))
    if not bins or not series:
        return None
    floors = floor_detection_by_size(results)
    fig = Figure(figsize=(13, 5.4), dpi=DPI)
    left, right = fig.subplots(1, 2, sharey=True)
    x = list(range(len(bins)))
    draw_models(left, x, series)
    left.set_title("trained models")
    legend_right(left)
    for level, stats in floors.items():
        points = [(xi, s) for xi, s in zip(x, stats, strict=True) if s is not None]
        if points:
            right.errorbar([xi for xi, _ in points], [s.mean for _, s in points],
                           yerr=interval_bars([s for _, s in points]), capsize=2, marker="o",
                           color=LEVEL_COLORS[level % len(LEVEL_COLORS)], label=f"floor, level {level}")  # fmt: skip
    right.set_title("resolution floor of each level (the best a level's map allows)")
    right.legend(fontsize=9, loc="lower right")
    for ax in (left, right):
        ax.set_xticks(x, bins)
        ax.set_xlabel(f"object size: equivalent diameter ({results.unit})")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
    left.set_ylabel("fraction of objects detected (IoU ≥ 0.5)")
    fig.suptitle(f"Detection by object size (test set; bars: 95 % intervals{note})", fontsize=13)
    fig.tight_layout()
    fig.savefig(path)
    return path


def nsd_vs_tolerance(results: Results, path: Path) -> Path | None:
    """Surface Dice against its tolerance τ, a line per model (x on a log scale)."""
    taus = tolerances(results)
    series, note = model_lines(by_tolerance(results))
    if not taus or not series:
        return None
    fig = Figure(figsize=(11, 5.2), dpi=DPI)
    ax = fig.subplots()
    draw_models(ax, taus, series)
    ax.set_xscale("log", base=2)
    ax.set_xticks(taus, [f"{tau:g}" for tau in taus])
    ax.minorticks_off()
    ax.set_xlabel(f"tolerance τ ({results.unit}, log scale)")
    ax.set_ylabel("nsd (fraction of boundary within τ)")
    ax.set_ylim(top=1.02)
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"Surface Dice against its tolerance (higher is better; bars: 95 % intervals{note})", fontsize=12)
    legend_right(ax)
    fig.tight_layout()
    fig.savefig(path)
    return path


MAX_SUSCEPTIBILITY_PANELS = 6


def susceptibility_by_key(results: Results, path: Path) -> Path | None:
    """Hellinger distance between in-domain and shifted activations by feature key, a line per shift, a panel per
    model of the deepest depth (all skips and no skips first)."""
    names = shifts(results)
    deepest = max((m.depth for m in results.models), default=0)
    models = [m for m in sorted(results.models, key=lambda m: skip_order(m.skip_label)) if m.depth == deepest]
    models = [m for m in models if any(susceptibility(results, m, name) for name in names)][:MAX_SUSCEPTIBILITY_PANELS]
    if not names or not models:
        return None
    ncols = min(3, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig = Figure(figsize=(4.8 * ncols + 1.5, 3.8 * nrows + 0.8), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, model in zip(axes, models, strict=False):
        for index, name in enumerate(names):
            found = susceptibility(results, model, name)
            keys = [key for key, _ in found]
            ax.errorbar(range(len(found)), [s.mean for _, s in found], yerr=interval_bars([s for _, s in found]),
                        capsize=2, marker="o", color=OTHER_COLORS[index % len(OTHER_COLORS)], label=name)  # fmt: skip
        ax.set_xticks(range(len(keys)), keys, rotation=45)
        ax.set_title(model.legend)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("Hellinger distance (0 = unchanged)")
    legend_right(axes[min(ncols, len(models)) - 1])
    fig.suptitle("Domain susceptibility by layer: in-domain vs shifted activations (bars: 95 % intervals)", fontsize=13)
    fig.tight_layout()
    fig.savefig(path)
    return path


def erf_vs_theoretical(results: Results, path: Path) -> Path | None:
    """ERF size (side holding 95 % of the gradient mass) against the theoretical field of every encoder key, trained
    (filled) and at random init (open), log-log, with the line ERF = theoretical and the least-squares fit."""
    from unetlab.report.published import erf_points, log_slope

    trained, init = erf_points(results), erf_points(results, trained=False)
    if not trained:
        return None
    fig = Figure(figsize=(9, 6), dpi=DPI)
    ax = fig.subplots()
    for points, filled in ((init, False), (trained, True)):
        for model, level, size, theoretical in points:
            color = LEVEL_COLORS[level % len(LEVEL_COLORS)]
            face = color if filled else "white"
            marker = "o" if model.skip_label == "all" else "s"
            ax.errorbar([theoretical.mean], [size.mean], yerr=interval_bars([size]), marker=marker, markersize=6,
                        color=color, markerfacecolor=face, linestyle="none", capsize=2)  # fmt: skip
    sizes = [p[3].mean for p in trained]
    line = [min(sizes) * 0.8, max(sizes) * 1.2]
    ax.plot(line, line, color="black", linestyle=":", label="ERF = theoretical field")
    slope, low, high = log_slope(sizes, [p[2].mean for p in trained])
    x = torch.tensor(sizes, dtype=torch.float64).log()
    y = torch.tensor([p[2].mean for p in trained], dtype=torch.float64).log()
    intercept = float(y.mean() - slope * x.mean())
    ax.plot(line, [math.exp(intercept) * v**slope for v in line], color="#d62728",
            label=f"fit, trained: exponent {slope:.2f} [{low:.2f}, {high:.2f}]")  # fmt: skip
    for level in sorted({p[1] for p in trained}):
        ax.plot([], [], marker="o", color=LEVEL_COLORS[level % len(LEVEL_COLORS)], linestyle="none",
                label=f"enc{level}")  # fmt: skip
    ax.plot([], [], marker="o", color="grey", linestyle="none", markerfacecolor="white", label="open: random init")
    ax.plot([], [], marker="s", color="grey", linestyle="none", label="square: no skips, circle: all")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("theoretical receptive field side (px, log scale)")
    ax.set_ylabel("ERF side holding 95 % of the gradient mass (px, log scale)")
    ax.grid(True, which="both", alpha=0.25)
    ax.set_title("ERF against theoretical field, every encoder key (bars: 95 % intervals)")
    legend_right(ax)
    fig.tight_layout()
    fig.savefig(path)
    return path


def answer_figure(results: Results, path: Path) -> Path | None:
    """The answer's figure: hd95 of the all-skip and the no-skip models by depth with 95 % bands, and at the deepest
    depth with both a bracket marking what the skips give back."""
    series = {label: points for label, points in by_depth(results, "hd95").items() if label in ("all", "none")}
    if not series:
        return None
    fig = Figure(figsize=(7.5, 4.2), dpi=DPI)
    ax = fig.subplots()
    for label, points in series.items():
        depths = [d for d, _ in points]
        stats = [s for _, s in points]
        kwargs = style(label, 0)
        ax.plot(depths, [s.mean for s in stats], label=skip_set_name(label), **kwargs)
        if not any(math.isnan(s.low) for s in stats):
            ax.fill_between(depths, [s.low for s in stats], [s.high for s in stats], color=kwargs["color"],
                            alpha=0.15, linewidth=0)  # fmt: skip
    both = sorted(set(d for d, _ in series.get("all", [])) & set(d for d, _ in series.get("none", [])))
    if both:
        depth = both[-1]
        low, high = (dict(series[label])[depth].mean for label in ("all", "none"))
        ax.annotate("", xy=(depth + 0.08, low), xytext=(depth + 0.08, high),
                    arrowprops={"arrowstyle": "<->", "color": "#444444"})  # fmt: skip
        ax.text(depth + 0.14, (low + high) / 2, f"skips give back\n{high - low:.2f} {results.unit}", va="center",
                fontsize=10)  # fmt: skip
        ax.set_xlim(min(d for points in series.values() for d, _ in points) - 0.2, depth + 0.9)
    ax.set_xticks(sorted({d for points in series.values() for d, _ in points}))
    ax.set_xlabel("depth (number of down-samplings)")
    ax.set_ylabel(f"hd95 ({results.unit}), lower is better")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"Boundary error by depth, with and without skips\n(bands: {runs_note(series).split(': ', 1)[1]})",
                 fontsize=10.5)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    return path


def drawable(x: list[int], stats: list[Stat | None]) -> list[tuple[int, Stat]]:
    """The (x, stat) pairs that have a number."""
    return [(i, s) for i, s in zip(x, stats, strict=True) if s is not None and not math.isnan(s.mean)]


def found_vs_placed(results: Results, path: Path) -> Path | None:
    """Three panels by feature key at one depth: the share of objects each key's probe finds, the hd95 of the found
    ones and its spurious blobs per image, a line per model (all skips, no skips) against the floor of the key's
    level (dashed)."""
    layers = layer_objects(results)
    if layers is None:
        return None
    fig = Figure(figsize=(15, 4.8), dpi=DPI)
    axes = fig.subplots(1, 3)
    x = list(range(len(layers.keys)))
    titles = {"detected": "objects found (share, higher is better)",
              "hd95": f"hd95 of the found objects ({results.unit}, lower is better)",
              "spurious": "spurious blobs per image (false positives)"}  # fmt: skip
    for ax, metric in zip(axes, LAYER_METRICS, strict=True):
        bottleneck = layers.keys.index(f"enc{layers.depth}")
        ax.axvspan(bottleneck - 0.5, bottleneck + 0.5, color="#eeeeee", zorder=0)
        for label, series in layers.probes.items():
            points = [
                (i, s) for i, s in zip(x, series[metric], strict=True) if s is not None and not math.isnan(s.mean)
            ]
            if points:
                ax.errorbar([i for i, _ in points], [s.mean for _, s in points],
                            yerr=interval_bars([s for _, s in points]), capsize=3,
                            label=f"probe, {skip_set_name(label)}", **style(label, 0))  # fmt: skip
        floor = [
            (i, s) for i, s in zip(x, layers.floor[metric], strict=True) if s is not None and not math.isnan(s.mean)
        ]
        if floor:
            ax.plot([i for i, _ in floor], [s.mean for _, s in floor], linestyle="--", color="black", marker="_",
                    markersize=10, label="floor of the key's level")  # fmt: skip
        ax.set_xticks(x, layers.keys, rotation=0 if len(x) <= 9 else 45)
        ax.set_xlabel("feature key (forward order; grey: bottleneck)")
        ax.set_title(titles[metric])
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0, top=1.05 if metric == "detected" else None)
    axes[0].legend(fontsize=9, loc="lower left")
    fig.suptitle(
        f"Found vs placed, layer by layer (depth {layers.depth}; linear probes, objects matched at IoU ≥ 0.5; bars: "
        "95 % intervals)",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path)
    return path
