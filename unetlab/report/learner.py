"""Why deep units see more and place worse, for a learner: the field and grid of every feature key of one model,
computed from its layers, as a table, a figure and three paragraphs that carry the model's numbers.

The model is the deepest all-skip model of the results (the one ``unetlab-ablate`` draws); its network is built from
the ``model`` group of its lowest-seed run's ``.hydra/config.yaml`` and walked layer by layer. The exact fields come
from ``unetlab.receptive_field``; the paragraphs state the recurrences a reader can follow by hand in the encoder:
``r_out = r_in + (k - 1) * j_in`` and ``j_out = j_in * s`` for a layer of kernel ``k`` and stride ``s``.
``learner_part`` is the report's entry, ``learner_data`` the explorer's (``docs/receptive-fields.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import nn

from unetlab.conventions import level_of
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import layer_geometry, leaf_layers, path_field_functions, receptive_fields
from unetlab.report.collect import Model, Results
from unetlab.report.tables import Table

HEADING = "Why deep units see more and place worse"
COLUMNS = ["key", "level", "layers from the key before (kernel, stride)", "jump = grid cell (px)", "field (px)"]
ENCODER_COLOUR, DECODER_COLOUR = "#1f77b4", "#ff7f0e"


@dataclass
class KeyRow:
    """One feature key: ``layers`` the spatial layers from the key before it (as kernel and stride), ``jump`` the
    input px between neighbouring units (the side of the cell a unit stands for), ``size`` the side of its largest
    theoretical field in input px."""

    key: str
    level: int
    layers: str
    jump: int | float
    size: int

    @property
    def in_encoder(self) -> bool:
        return self.key.startswith("enc")


def layer_name(layer: nn.Module) -> str:
    """``conv 3×3 s1``, ``max-pool 2×2 s2``, ``up-conv 2×2 s½`` (a transposed conv of stride 2 halves the jump)."""
    kernel, stride, _, _ = layer_geometry(layer, 0)
    if isinstance(layer, nn.ConvTranspose2d):
        return f"up-conv {kernel}×{kernel} s1/{stride}".replace("s1/2", "s½")
    kind = {nn.Conv2d: "conv", nn.MaxPool2d: "max-pool", nn.AvgPool2d: "avg-pool"}[type(layer)]
    return f"{kind} {kernel}×{kernel} s{stride}"


def layers_text(layers: list[nn.Module]) -> str:
    """The spatial layers of ``layers`` in order, runs of the same layer written once with a count."""
    names = [layer_name(layer) for layer in layers if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d,
                                                                         nn.ConvTranspose2d))]  # fmt: skip
    runs: list[list] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return ", ".join(name if count == 1 else f"{count} × {name}" for name, count in runs)


def field_rows(net: UNetLike) -> list[KeyRow]:
    """One row per feature key (enc0..encD, dec{D-1}..dec0) in forward order, walking the model's stages: each
    encoder level, and per decoder level ``up``, the skip (where kept) and ``merge``, as ``receptive_fields`` does."""
    fields = receptive_fields(net)
    layers = {f"enc{level}": layers_text(leaf_layers(*net.stage(f"enc{level}"))) for level in range(net.depth + 1)}
    for level in reversed(range(net.depth)):
        up, merge = net.stage(f"dec{level}")
        skip = [f"+ skip from enc{level}"] if level in net.skip_levels else []
        layers[f"dec{level}"] = ", ".join([layers_text(leaf_layers(up)), *skip, layers_text(leaf_layers(merge))])
    return [
        KeyRow(key, level_of(key), layers[key], fields[key].jump, fields[key].size)
        for key in protocol.feature_keys(net)
        if key != "logits"
    ]


def recurrence_terms(layers: list[nn.Module], field: int, jump: int) -> tuple[list[int], int]:
    """What each spatial layer of ``layers`` (no up-sampling) adds to the field, ``(k - 1) * j_in``, and the jump
    after them (``j_out = j_in * s``), from a field ``field`` and jump ``jump`` before them."""
    terms = []
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride, _, dilation = layer_geometry(layer, 0)
            terms.append(dilation * (kernel - 1) * jump)
            jump *= stride
    return terms, jump


def with_article(number: int | float) -> str:
    """The number with its article as it is read aloud: ``a 16``, ``an 8``, ``an 11``."""
    text = f"{number:g}"
    return f"{'an' if text.startswith('8') or text in ('11', '18') else 'a'} {text}"


def paragraphs(net: UNetLike, rows: list[KeyRow], image_side: int | None) -> list[tuple[str, str]]:
    """The three paragraphs ``(lead, text)``: why deeper units see more, why a coarser grid costs location, how a
    skip gives the decoder the fine grid back; every number from ``rows`` and ``net``'s layers."""
    by_key = {row.key: row for row in rows}
    deepest = by_key[f"enc{net.depth}"]
    conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    pool = next(m for m in leaf_layers(*net.stage("enc1")) if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)))
    conv_k, pool_k, pool_s = layer_geometry(conv, 0)[0], *layer_geometry(pool, 0)[:2]
    # The first two encoder keys by the recurrence, term by term, from one input pixel.
    sums, field, jump = [], 1, 1
    for level in range(min(2, net.depth + 1)):
        terms, jump = recurrence_terms(leaf_layers(*net.stage(f"enc{level}")), field, jump)
        verb = "sees " if level == 0 else ""
        sums.append(f"enc{level} {verb}{field + sum(terms)} px ({' + '.join(map(str, [field, *terms]))})")
        field += sum(terms)
    growth = ", ".join(str(by_key[f"enc{level}"].size) for level in range(net.depth + 1))
    times = "twice" if pool_s == 2 else f"{pool_s} times"
    see_more = (
        f"A unit's field is the square of input pixels that can change it; its jump is how many input pixels lie "
        f"between it and its neighbour in the same map, the side of the grid cell it stands for. A layer with kernel "
        f"k and stride s updates both: r_out = r_in + (k − 1) · j_in and j_out = j_in · s, from r = j = 1 at the "
        f"input. A {conv_k}×{conv_k} conv adds {conv_k - 1} · jump px to the field and keeps the grid; a "
        f"{pool_k}×{pool_k} pool adds {pool_k - 1} · jump and multiplies the jump by {pool_s}, so every conv after it "
        f"adds {times} as much as before. Hence {' and '.join(sums)}; down the encoder the fields grow {growth} "
        f"px, and enc{net.depth} sees {deepest.size} px through {with_article(deepest.jump)}-px grid."
    )
    cells = ""
    if image_side:
        units = image_side // int(deepest.jump)
        image, grid = with_article(image_side), with_article(units)
        cells = f" ({image}-px image is {grid} × {units} map of {deepest.jump:g}-px cells at enc{net.depth})"
    wider = f", more than the whole {image_side}-px image," if image_side and deepest.size > image_side else ""
    place = (
        f"A unit at level i stands for one 2^i × 2^i-px cell of the input{cells}. However much it sees, it says one "
        f"thing for its whole cell, so a map at level i can place a boundary only to within its cell, 2^i px; this is "
        f"the resolution floor of the probe tables. enc{net.depth} sees {deepest.size} px{wider} but through "
        f"{with_article(deepest.jump)}-px grid: it knows what is in the image, not exactly where its edges are."
    )
    finest = by_key["dec0"]
    up = next(m for m in leaf_layers(net.stage("dec0")[0]) if isinstance(m, nn.ConvTranspose2d))
    up_k, up_s = layer_geometry(up, 0)[:2]
    largest = "the largest field of any key" if finest.size >= max(row.size for row in rows) else "a large field"
    skip_text = ""
    if 0 in net.skip_levels:
        skip = path_field_functions(net)["dec0"]["skip 0"]
        skip_side = max(hi - lo + 1 for lo, hi in (skip(unit, unit) for unit in range(2**net.depth)))
        skip_text = (f" Its path through the skip from enc0 is only {skip_side} px wide, so the fine detail arrives "
                     "nearly as the first layers saw it.")  # fmt: skip
    skips = (
        f"Each {up_k}×{up_k} up-conv divides the jump by {up_s}, but neighbouring units of its output read the same "
        f"coarse unit: it gives back the grid, not the detail. A skip concatenates the encoder map of the same level, "
        f"whose units still sit on that level's fine cells, and the decoder's convs combine the two: the deep path's "
        f"large field says what is there, the skip's small cells say where. dec0 sees {finest.size} px, "
        f"{largest}, through {with_article(finest.jump)}-px grid: it sees the most and places best.{skip_text} "
        f"Without skips dec0 has the same field and grid, but all it knows has come up through the "
        f"{deepest.jump:g}-px cells of enc{net.depth}."
    )
    return [
        ("Why deeper units see more.", see_more),
        ("Why seeing more through a coarser grid costs location.", place),
        ("How a skip gives the decoder the fine grid back.", skips),
    ]


def fields_figure(rows: list[KeyRow], title: str, image_side: int | None, skip_levels: tuple[int, ...]) -> Figure:
    """Field side against grid cell (jump), both on log-2 axes, one point per key labelled with its field: encoder
    circles, decoder squares (the forward path drawn through the bottleneck), a dashed line from enc i to dec i where
    the skip at level i is kept, the image side dotted, and the two corners of the argument named: the bottleneck's
    large field on a coarse grid, dec0's large field on a fine grid."""
    figure = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = figure.add_subplot()
    encoder = [row for row in rows if row.in_encoder]
    decoder = [encoder[-1], *(row for row in rows if not row.in_encoder)]  # the decoder starts from the bottleneck
    ax.plot([r.jump for r in encoder], [r.size for r in encoder], "o-", color=ENCODER_COLOUR, lw=1.5, ms=8,
            label="encoder keys (forward: down the encoder)")  # fmt: skip
    ax.plot([r.jump for r in decoder], [r.size for r in decoder], "-", color=DECODER_COLOUR, lw=1.5)
    ax.plot([r.jump for r in decoder[1:]], [r.size for r in decoder[1:]], "s", color=DECODER_COLOUR, ms=8,
            label="decoder keys (forward: up the decoder)")  # fmt: skip
    for row in rows:
        colour = ENCODER_COLOUR if row.in_encoder else DECODER_COLOUR
        ax.annotate(f"{row.key} ({row.size} px)", (row.jump, row.size), textcoords="offset points", fontsize=8.5,
                    xytext=(8, -13) if row.in_encoder else (0, 9), ha="left" if row.in_encoder else "center",
                    color=colour, fontweight="bold")  # fmt: skip
    by_key = {row.key: row for row in rows}
    for i, level in enumerate(skip_levels):
        enc, dec = by_key[f"enc{level}"], by_key[f"dec{level}"]
        ax.plot([enc.jump, dec.jump], [enc.size, dec.size], ls="--", color="grey", lw=0.8,
                label="skip: the same grid, the decoder's larger field" if i == 0 else None)  # fmt: skip
    if image_side:
        ax.axhline(image_side, color="grey", ls=":", lw=1, label=f"image side ({image_side} px)")
    bottleneck, finest = encoder[-1], by_key["dec0"]
    ax.annotate("large field, coarse grid:\nknows what, not where", (bottleneck.jump, bottleneck.size),
                textcoords="offset points", xytext=(-10, -42), ha="center", fontsize=8, color="#444")  # fmt: skip
    ax.annotate("large field, fine grid:\nknows what and where", (finest.jump, finest.size),
                textcoords="offset points", xytext=(6, -34), ha="left", fontsize=8, color="#444")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    jumps = sorted({row.jump for row in rows})
    ax.set_xticks(jumps, [f"{jump:g}" for jump in jumps])
    ax.set_xlim(min(jumps) / 1.6, max(jumps) * 1.6)
    sizes = [row.size for row in rows]
    ticks = [2**k for k in range(max(sizes).bit_length() + 1) if min(sizes) / 2 <= 2**k <= max(sizes) * 2]
    ax.set_yticks(ticks, [str(tick) for tick in ticks])
    ax.set_ylim(min(sizes) / 1.5, max(sizes) * 1.6)
    ax.minorticks_off()
    ax.set_xlabel("grid cell = jump between neighbouring units (input px, log scale): coarser →")
    ax.set_ylabel("theoretical field (px, log scale): sees more ↑")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return figure


def deepest_all_skip(results: Results) -> Model | None:
    """The deepest model that keeps every skip, or None."""
    models = [model for model in results.models if model.kept == tuple(range(model.depth))]
    return max(models, key=lambda model: model.depth, default=None)


def model_config(results: Results, model: Model) -> Path | None:
    """``.hydra/config.yaml`` of the lowest-seed run of ``model`` that has one, or None."""
    by_name = {f"{path.parent.parent.name}/{path.parent.name}": path.parent for path in results.files}
    for name in sorted(results.runs.get(model, [])):
        config = by_name[name] / ".hydra" / "config.yaml" if name in by_name else None
        if config is not None and config.is_file():
            return config
    return None


def described_model(results: Results) -> tuple[Model, UNetLike] | None:
    """The deepest all-skip model and its network, built from its run's config (weights play no part in a field:
    untrained, one input channel, two classes), or None when there is no such model or no config."""
    model = deepest_all_skip(results)
    config = None if model is None else model_config(results, model)
    if config is None:
        return None
    net = instantiate(OmegaConf.load(config).model, in_channels=1, num_classes=2)
    return model, net


def image_side(model: Model) -> int | None:
    return int(model.image_size) if str(model.image_size).isdecimal() else None


def describe(results: Results) -> tuple[Model, UNetLike, list[KeyRow], list[tuple[str, str]]] | None:
    """The model, its network, its rows and paragraphs, or None (``described_model``)."""
    found = described_model(results)
    if found is None:
        return None
    model, net = found
    try:
        rows = field_rows(net)
    except TypeError:  # a library U-Net whose fields its layers do not give (instance norm, residual blocks)
        return None
    if not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in leaf_layers(*net.stage("enc1"))):
        return None  # the paragraphs tell the pooled encoder's story; a strided-conv encoder would need its own
    return model, net, rows, paragraphs(net, rows, image_side(model))


def table_of(rows: list[KeyRow], depth: int) -> Table:
    return Table(
        f"Field and grid of every feature key of the depth-{depth} all-skip model (computed from its layers)",
        COLUMNS,
        [[row.key, str(row.level), row.layers, f"{row.jump:g}", str(row.size)] for row in rows],
    )


def learner_part(results: Results, path: Path) -> tuple[str, str, Path | None, list[Table]]:
    """The report's entry ``(heading, text, figure, tables)`` (as ``build_section``'s candidates): the three
    paragraphs, the figure written to ``path`` and the table; no figure and no table (the entry is left out) when
    the results have no all-skip model with a run config."""
    described = describe(results)
    if described is None:
        return HEADING, "", None, []
    model, net, rows, texts = described
    title = f"Field against grid cell by key, depth-{model.depth} all-skip model"
    fields_figure(rows, title, image_side(model), net.skip_levels).savefig(path, dpi=110)
    how = (
        "The figure puts every key at its grid cell (x) and its field (y); the table gives the layers between keys "
        "(s½: a stride-2 up-conv halves the jump) and the exact field, the largest over unit positions."
    )
    text = "\n\n".join([*(f"**{lead}** {body}" for lead, body in texts), how])
    return HEADING, text, path, [table_of(rows, model.depth)]


def learner_data(results: Results) -> dict | None:
    """The explorer's ``learner`` (``docs/explorer.md``): the table and the paragraphs of ``learner_part``."""
    described = describe(results)
    if described is None:
        return None
    model, _, rows, texts = described
    table = table_of(rows, model.depth)
    return {
        "heading": HEADING,
        "title": table.title,
        "columns": table.columns,
        "rows": table.rows,
        "paragraphs": [{"lead": lead, "text": body} for lead, body in texts],
    }
