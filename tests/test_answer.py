"""The report's answer block (``unetlab/report/answer.py``) and its links, on synthetic runs with known numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures_report import DEPTHS, write_grid
from unetlab.report import make_report
from unetlab.report.answer import amount, answer
from unetlab.report.collect import collect
from unetlab.report.intervals import Diff

INTERVAL = re.compile(r"\[[−+]?\d+\.\d+, [−+]?\d+\.\d+\]")
DEEPEST = max(DEPTHS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("answer")
    write_grid(root / "grid")
    viz = root / "out" / "viz"
    viz.mkdir(parents=True)
    Image.new("RGB", (8, 8), "white").save(viz / "fields.png")
    make_report([root / "grid"], root / "out", pictures=[("Receptive fields", "Fields.", viz / "fields.png")])
    return root


def answer_html(html: str) -> str:
    return html.split('<section id="answer"', 1)[1].split("</section>", 1)[0]


def test_the_answer_comes_first_with_its_intervals(built):
    html = (built / "out" / "report.html").read_text()
    assert html.index('id="answer"') < html.index("<figure") < html.index("What the numbers show")
    block = answer_html(html)
    assert len(INTERVAL.findall(block)) >= 2 and "<figure><img" in block
    md = (built / "out" / "report.md").read_text()
    assert md.index("## The answer") < md.index("![") and md.index("## The answer") < md.index("## What the numbers")


def test_the_answer_says_what_the_numbers_say(built):
    results = collect([built / "grid"])
    models = {(m.depth, m.skip_label): m for m in results.models}
    back = results.difference((models[(DEEPEST, "none")], "model"), (models[(DEEPEST, "all")], "model"))
    growth = results.difference((models[(DEEPEST, "none")], "model"), (models[(DEPTHS[0], "none")], "model"))
    found = answer(results, built / "answer.png")
    text = " ".join(found.sentences)
    assert f"the skips give back {amount(back)}" in text and back.value > 0
    assert "boundary error grows with depth" in text and f"({growth.value:+.2f} px [".replace("-", "−") in text
    assert "level 0, the full-resolution skip" in text  # the fixture's lowest Shapley value
    assert found.image.is_file()


def test_amount_drops_the_sign_and_keeps_the_verdict():
    assert amount(Diff(-2.5, -2.96, -2.08, True, True)) == "2.50 px [2.08, 2.96]"
    assert amount(Diff(0.1, -0.2, 0.4, False, True)) == "0.10 px [−0.20, 0.40], not significant"


def test_every_link_of_report_md_resolves(built):
    out = built / "out"
    md = (out / "report.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", md)
    assert "viz/fields.png" in targets  # a picture beside the report, in its own folder
    missing = [target for target in targets if not (out / target).exists()]
    assert targets and not missing, missing


def test_no_answer_without_the_models_it_needs(tmp_path):
    write_grid(tmp_path / "grid", drop_one=None, singles=None)
    results = collect([tmp_path / "grid"])
    kept = [m for m in results.models if m.skip_label == "all"]
    assert kept
    # the same results, the no-skip models left out: no growth, no give-back; the Shapley sentence alone remains
    results.params = {m: p for m, p in results.params.items() if m.skip_label != "none"}
    found = answer(results, tmp_path / "a.png")
    assert found is not None and len(found.sentences) == 1 and found.sentences[0].startswith("The fine detail")
    assert Path(tmp_path / "a.png").is_file()
