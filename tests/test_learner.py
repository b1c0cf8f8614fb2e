"""The report's learner part (``unetlab/report/learner.py``): the field table read from the network's modules, the
figure of field against grid cell, the paragraphs with the model's numbers, and the part in a report built from the
synthetic runs of ``tests/fixtures_report.py``.

The expected fields are worked out by hand from the recurrences r_out = r_in + (k - 1) * j_in, j_out = j_in * s
(3x3 convs with stride 1, 2x2 max-pools with stride 2); see the comments at each number.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from torch import nn

from tests.fixtures_report import write_grid
from unetlab.models.unet import UNet
from unetlab.report import make_report
from unetlab.report.collect import collect
from unetlab.report.learner import HEADING, field_rows, fields_figure, learner_data, learner_part, paragraphs


def net_of(depth: int, skips="all") -> UNet:
    return UNet(in_channels=1, num_classes=2, depth=depth, base_channels=4, skips=skips)


def test_field_table_follows_the_recurrences_depth_1_and_2():
    # enc0: two 3x3 convs at jump 1: 1 + 2 + 2 = 5.
    # enc1: the 2x2 pool adds (2 - 1) * 1 = 1 and doubles the jump to 2; two convs add 2 * 2 each: 5 + 1 + 4 + 4 = 14.
    # enc2: the pool adds 1 * 2 and makes the jump 4; the convs add 8 each: 14 + 2 + 8 + 8 = 32.
    # dec1 (depth 2): the 2x2 stride-2 up-conv halves the jump to 2 and each of its units reads one enc2 unit; its two
    #   convs read 5 up units, which read 3 enc2 units: 32 + 2 * 4 = 40 px.
    # dec0 (depth 1): the same from enc1: 5 up units read 3 enc1 units: 14 + 2 * 2 = 18 px at jump 1.
    # dec0 (depth 2): from dec1 (40 px, jump 2): 5 up units read 3 dec1 units: 40 + 2 * 2 = 44 px at jump 1.
    expected = {
        1: {"enc0": (0, 1, 5), "enc1": (1, 2, 14), "dec0": (0, 1, 18)},
        2: {"enc0": (0, 1, 5), "enc1": (1, 2, 14), "enc2": (2, 4, 32), "dec1": (1, 2, 40), "dec0": (0, 1, 44)},
    }
    for depth, keys in expected.items():
        rows = field_rows(net_of(depth))
        assert [row.key for row in rows] == list(keys)  # forward order, no logits
        assert {row.key: (row.level, row.jump, row.size) for row in rows} == keys, f"depth {depth}"
    rows = {row.key: row for row in field_rows(net_of(2, skips=[1]))}
    assert rows["enc0"].layers == "2 × conv 3×3 s1"
    assert rows["enc1"].layers == "max-pool 2×2 s2, 2 × conv 3×3 s1"
    assert rows["dec1"].layers == "up-conv 2×2 s½, + skip from enc1, 2 × conv 3×3 s1"
    assert rows["dec0"].layers == "up-conv 2×2 s½, 2 × conv 3×3 s1"  # skip 0 removed: no skip in the row


def test_the_table_is_read_from_the_modules():
    """A 5x5 first conv (padding 2) makes enc0 1 + 4 + 2 = 7 px and enc1 7 + 1 + 4 + 4 = 16 px; the row says so."""
    net = net_of(1)
    net.encoder[0].layers[0] = nn.Conv2d(1, 4, kernel_size=5, padding=2, bias=False)
    rows = {row.key: row for row in field_rows(net)}
    assert rows["enc0"].layers == "conv 5×5 s1, conv 3×3 s1"
    assert (rows["enc0"].size, rows["enc1"].size) == (7, 16)


def test_paragraphs_carry_the_models_numbers():
    depth = 4
    net = net_of(depth)
    field, jump = 5, 1  # enc0
    for _ in range(depth):  # each level: a 2x2 pool, then two 3x3 convs at the doubled jump
        field, jump = field + jump + 2 * (2 * jump) * 2, 2 * jump
    texts = dict(paragraphs(net, field_rows(net), 64))
    see_more, place, skip = texts.values()
    assert "r_out = r_in + (k − 1) · j_in" in see_more and "j_out = j_in · s" in see_more
    assert "enc0 sees 5 px (1 + 2 + 2) and enc1 14 px (5 + 1 + 4 + 4)" in see_more
    assert f"enc{depth} sees {field} px through a {jump}-px grid" in see_more
    assert f"a 64-px image is a {64 // jump} × {64 // jump} map of {jump}-px cells" in place
    dec0 = {row.key: row for row in field_rows(net)}["dec0"]
    assert f"dec0 sees {dec0.size} px, the largest field of any key, through a 1-px grid" in skip
    # the skip's own path into dec0: enc0 (5 px) and the two 3x3 convs at jump 1: 5 + 2 + 2 = 9 px
    assert "through the skip from enc0 is only 9 px wide" in skip
    no_skips = net_of(2, "none")
    assert "skip from enc0" not in paragraphs(no_skips, field_rows(no_skips), 64)[2][1]


def test_the_figure_puts_every_key_at_its_grid_cell_and_field(tmp_path):
    net = net_of(3)
    rows = field_rows(net)
    figure = fields_figure(rows, "depth 3", 64, net.skip_levels)
    ax = figure.axes[0]
    encoder, decoder_path, decoder = ax.lines[:3]
    assert list(encoder.get_xdata()) == [1, 2, 4, 8] and list(encoder.get_ydata()) == [5, 14, 32, 68]
    assert list(decoder.get_xdata()) == [4, 2, 1]  # dec2, dec1, dec0: the jump halves on the way up
    assert list(decoder.get_ydata()) == [row.size for row in rows if row.key.startswith("dec")]
    assert decoder_path.get_xdata()[0] == 8  # the decoder's line starts at the bottleneck
    labels = {text.get_text() for text in ax.texts}
    assert {f"{row.key} ({row.size} px)" for row in rows} <= labels
    assert ax.get_xscale() == ax.get_yscale() == "log"
    skips = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(skips) == 3  # one per kept skip level


CONFIG = """model:
  _target_: unetlab.models.unet.UNet
  in_channels: null
  num_classes: null
  depth: {depth}
  base_channels: 4
  skips: {skips}
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """Depth 1..3, all and no skips, one seed, each run with the model part of its .hydra/config.yaml."""
    root = tmp_path_factory.mktemp("learner") / "grid"
    for path in write_grid(root, drop_one=None, singles=None, seeds=(0,)):
        run = path.parent
        depth = int(run.name[1])
        skips = "all" if run.name.split("_")[1] != "snone" else "none"
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(CONFIG.format(depth=depth, skips=skips))
    return root


def test_the_report_has_the_learner_part(grid, tmp_path):
    make_report([grid], tmp_path / "out")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"## {HEADING}" in markdown
    part = markdown.split(f"## {HEADING}")[1].split("\n## ")[0]
    assert "depth-3 all-skip model" in part  # the deepest all-skip model of the grid
    assert "enc3 sees 68 px through an 8-px grid" in part
    assert "| dec0 | 0 | up-conv 2×2 s½, + skip from enc0, 2 × conv 3×3 s1 | 1 | 100 |" in part
    assert "![" in part and (tmp_path / "out" / "report_fields_by_key.png").stat().st_size > 10_000
    html = (tmp_path / "out" / "report.html").read_text()
    section = html.split(f">{HEADING}<")[1].split("<h2>")[0]
    assert section.count("<p>") == 4  # the three paragraphs and the line on the figure and table, one <p> each
    assert "<strong>Why deeper units see more.</strong>" in section


def test_without_a_run_config_the_part_is_left_out(tmp_path):
    write_grid(tmp_path / "grid", drop_one=None, singles=None, seeds=(0,))
    results = collect([tmp_path / "grid"])
    heading, text, image, tables = learner_part(results, tmp_path / "fields.png")
    assert (heading, image, tables) == (HEADING, None, []) and not (tmp_path / "fields.png").exists()
    assert learner_data(results) is None


def test_the_explorer_gets_the_same_table(grid):
    data = learner_data(collect([grid]))
    rows = field_rows(net_of(3))
    assert [row[0] for row in data["rows"]] == [row.key for row in rows]
    assert [int(row[4]) for row in data["rows"]] == [row.size for row in rows]
    assert [p["lead"] for p in data["paragraphs"]] == [
        "Why deeper units see more.",
        "Why seeing more through a coarser grid costs location.",
        "How a skip gives the decoder the fine grid back.",
    ]


def test_the_report_does_not_import_the_explain_command():
    """Commands share from below: the report reads fields from unetlab.receptive_field, never unetlab.explain."""
    code = "import sys, unetlab.report.build; print(sorted(m for m in sys.modules if m.startswith('unetlab.explain')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import unetlab.receptive_field as explain_fields
    import unetlab.receptive_field as fields

    assert explain_fields.receptive_fields is fields.receptive_fields
    assert fields.receptive_fields(net_of(1))["enc1"].size == 14
