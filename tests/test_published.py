"""Published findings: the verdicts follow the numbers (synthetic runs whose effects are known)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_report import image_factors, metric_columns, rows_from, run_name, write_run
from unetlab.report import make_report
from unetlab.report.collect import collect
from unetlab.report.published import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    kamath,
    log_slope,
    luo,
    published_findings,
    wilm,
)

SEEDS = (0, 1)


def extra_row(source: str, metric: str, value: float, half_width: float, unit: str = "") -> dict:
    return {"source": source, "metric": metric, "class": "mean", "value": value, "std": float("nan"), "n": 16,
            "empty_rate": float("nan"), "ci_low": value - half_width, "ci_high": value + half_width,
            "unit": unit}  # fmt: skip


def write_model(root: Path, depth: int, kept: tuple[int, ...], hd95: dict[str, float], extra=(), dataset="shapes"):
    """Two seeds of one model: per-image hd95 ``hd95[source]`` (times fixed image factors, the same on both seeds, so
    that differences between models are exactly the differences of the bases), plus ``extra`` rows."""
    for seed in SEEDS:
        per_image = {source: metric_columns(base * image_factors(source)) for source, base in hd95.items()}
        rows = rows_from(per_image) + list(extra)
        run_dir = root / f"{dataset}-{run_name(depth, kept, seed)}"
        write_run(run_dir, depth, kept, seed, per_image, rows=rows)
        if dataset != "shapes":  # the data set's name, as dataset_name writes it for a texture complexity
            path = run_dir / "results.csv"
            path.write_text(path.read_text().replace(",shapes,", f",{dataset},"))


def susceptibility_rows(values: dict[str, float], shift: str = "noise:0.1") -> list[dict]:
    return [extra_row(f"susceptibility/{shift}/{key}", "hellinger", v, 0.01) for key, v in values.items()]


def wilm_grid(root: Path, drop_hd95: dict[int, float]) -> None:
    """Depth 3: all skips 0.5, none 3.0, without level l ``drop_hd95[l]``; under noise:0.1 every model loses 1 px
    (none 2 px); the all-skip model's enc0 moves most, the no-skip model's dec0 hardly."""
    every = (0, 1, 2)
    write_model(root, 3, every, {"model": 0.5, "shift/noise:0.1": 1.5},
                susceptibility_rows({"enc0": 0.3, "enc3": 0.05, "dec0": 0.2}))  # fmt: skip
    write_model(root, 3, (), {"model": 3.0, "shift/noise:0.1": 5.0},
                susceptibility_rows({"enc0": 0.3, "enc3": 0.05, "dec0": 0.01}))  # fmt: skip
    for level, value in drop_hd95.items():
        kept = tuple(x for x in every if x != level)
        write_model(root, 3, kept, {"model": value, "shift/noise:0.1": value + 1.0})


def test_wilm_claims_reproduced_where_the_numbers_say_so(tmp_path):
    wilm_grid(tmp_path / "grid", {0: 0.4, 1: 0.8, 2: 0.9})
    claims = wilm(collect([tmp_path / "grid"]))
    assert [c.verdict for c in claims] == [REPRODUCED] * 4
    early, skips, full_vs_none, drop_top = claims
    assert "enc0 vs enc3" in early.measured and "noise:0.1 0.300 [0.290, 0.310] vs 0.050 [0.040, 0.060]" in (
        early.measured
    )
    assert "dec0 without skips vs dec0 with all" in skips.measured and "0.010 [0.000, 0.020] vs 0.200" in skips.measured
    assert "in domain −2.50 px [" in full_vs_none.measured and "under shift (mean over 1 shifts) −3.50 px" in (
        full_vs_none.measured
    )
    assert "vs all skips −0.10 px [" in drop_top.measured and "Lowest in-domain hd95: without level 0" in (
        drop_top.measured
    )


def test_wilm_top_skip_not_reproduced_when_another_drop_is_better(tmp_path):
    wilm_grid(tmp_path / "grid", {0: 0.9, 1: 0.8, 2: 0.4})
    *_, drop_top = wilm(collect([tmp_path / "grid"]))
    assert drop_top.verdict == NOT_REPRODUCED and "without level 2" in drop_top.measured


def test_kamath_benefit_grows_with_complexity_and_skips_lose_robustness(tmp_path):
    root = tmp_path / "grid"
    write_model(root, 3, (0, 1, 2), {"model": 0.5, "shift/noise:0.2": 0.6})
    write_model(root, 3, (), {"model": 0.6, "shift/noise:0.2": 0.7})
    for kept, base, shifted in (((0, 1, 2), 1.0, 2.0), ((), 3.0, 3.2)):
        write_model(root, 3, kept, {"model": base, "shift/noise:0.2": shifted}, dataset="shapes-complexity0.8")
    benefit, robustness = kamath(collect([root]))
    assert benefit.verdict == REPRODUCED
    assert "0: +0.10 px [" in benefit.measured and "0.8: +2.00 px [" in benefit.measured
    assert "growth from 0 to 0.8: +1.90 px [" in benefit.measured
    assert robustness.verdict == REPRODUCED and "mean over the shifts: +0.80 px [" in robustness.measured


def test_kamath_benefit_that_does_not_grow_is_not_reproduced(tmp_path):
    root = tmp_path / "grid"
    write_model(root, 3, (0, 1, 2), {"model": 0.5})
    write_model(root, 3, (), {"model": 2.5})
    write_model(root, 3, (0, 1, 2), {"model": 1.0}, dataset="shapes-complexity0.8")
    write_model(root, 3, (), {"model": 1.5}, dataset="shapes-complexity0.8")
    (benefit,) = kamath(collect([root]))
    assert benefit.verdict == NOT_REPRODUCED and "growth from 0 to 0.8: −1.50 px [" in benefit.measured


def erf_rows(theoretical: list[int], exponent: float, scale: float, width: float) -> list[dict]:
    """erf/enc<l> and erf_init/enc<l> rows: trained ERF ``scale * T**exponent``, init 0.8 times it."""
    rows = []
    for level, size in enumerate(theoretical):
        trained = scale * size**exponent
        for source, value in (("erf", trained), ("erf_init", 0.8 * trained)):
            rows += [extra_row(f"{source}/enc{level}", "size95", value, width * value, "px"),
                     extra_row(f"{source}/enc{level}", "theoretical", size, 0.0, "px")]  # fmt: skip
    return rows


def test_luo_claims_follow_the_fitted_exponent_and_the_ratio(tmp_path):
    theoretical = [5, 14, 32, 68, 140]
    write_model(tmp_path / "sub", 4, (), {"model": 1.0}, erf_rows(theoretical, 0.6, 2.0, 0.02))
    fraction, sublinear, enlarged = luo(collect([tmp_path / "sub"]))
    assert fraction.verdict == REPRODUCED  # 2 * 140**0.6 / 140 = 0.20 of the side
    assert sublinear.verdict == REPRODUCED and "0.60 [0.60, 0.60]" in sublinear.measured
    assert enlarged.verdict == REPRODUCED and "larger at 5, smaller at 0" in enlarged.measured
    write_model(tmp_path / "linear", 4, (), {"model": 1.0}, erf_rows(theoretical, 1.1, 0.5, 0.02))
    fraction, sublinear, _ = luo(collect([tmp_path / "linear"]))  # 0.5 * 140**0.1 = 0.82 of the side
    assert fraction.verdict == NOT_REPRODUCED and sublinear.verdict == NOT_REPRODUCED


def test_log_slope_of_a_power_law_with_noise_has_an_interval_around_it():
    x = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    y = [3 * v**0.5 * f for v, f in zip(x, (1.05, 0.95, 1.02, 0.97, 1.04, 0.98))]
    slope, low, high = log_slope(x, y)
    assert low < 0.5 < high and slope == pytest.approx(0.5, abs=0.05) and high - low < 0.2


def test_the_report_has_a_published_findings_section_only_when_its_runs_exist(tmp_path):
    wilm_grid(tmp_path / "grid", {0: 0.4, 1: 0.8, 2: 0.9})
    make_report([tmp_path / "grid"], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Published findings" in text and text.count("Verdict: **reproduced**") == 4
    assert INCONCLUSIVE not in text.split("## Published findings")[1].split("\n## ")[0]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("Verdict: <strong>reproduced</strong>") == 4 and "**" not in page  # bold, not asterisks
    plain = tmp_path / "plain"
    write_model(plain, 3, (0, 1, 2), {"model": 0.5})
    assert published_findings(collect([plain])) == []
