"""The report as Markdown (PNGs linked beside it) and as one self-contained HTML file (PNGs inlined as base64)."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from unetlab.report.tables import Table


@dataclass
class Part:
    """One figure with the text that explains it and the tables of its numbers."""

    heading: str
    text: str
    image: Path | None
    tables: list[Table]


@dataclass
class Section:
    """Everything about one setting (data set and image size)."""

    title: str
    findings: list[str] | None  # None: no findings part (a section of pictures)
    parts: list[Part]


@dataclass
class Document:
    """The whole report. ``answer``: the sentences and figure that open it, before any other figure; ``base``: the
    folder of report.md, which its image links are relative to."""

    title: str
    intro: list[str]
    sections: list[Section]
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    answer_image: Path | None = None
    base: Path | None = None

    def link(self, image: Path) -> str:
        """An image's link in report.md: relative to the report's folder (PNGs of viz/ included)."""
        if self.base is None:
            return image.name
        return Path(os.path.relpath(Path(image).resolve(), Path(self.base).resolve())).as_posix()


ANSWER_HEADING = "The answer"


# ---- Markdown ---------------------------------------------------------------------------------------------


def markdown_table(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", r"\|")

    lines = [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(map(cell, table.columns)) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(table.columns))) + "|")
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    if doc.answer:
        out += ['<a id="answer"></a>', "", f"## {ANSWER_HEADING}", ""]
        out += [" ".join(doc.answer), ""]
        if doc.answer_image is not None:
            out += [f"![{ANSWER_HEADING}]({doc.link(doc.answer_image)})", ""]
    out += [paragraph + "\n" for paragraph in doc.intro]
    nested = len(doc.sections) > 1
    h = "###" if nested else "##"
    for section in doc.sections:
        if nested:
            out += [f"## {section.title}", ""]
        if section.findings is not None:  # None: a section of pictures only
            out += [f"{h} What the numbers show", ""]
            out += [f"- {sentence}" for sentence in section.findings] or ["- (not enough data for any finding)"]
            out.append("")
        for part in section.parts:
            out += [f"{h} {part.heading}", "", part.text, ""]
            if part.image is not None:
                out += [f"![{part.heading}]({doc.link(part.image)})", ""]
            for table in part.tables:
                out += [markdown_table(table), ""]
    if doc.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in doc.notes] + [""]
    out += ["## Sources", "", f"{len(doc.sources)} results.csv files:", ""]
    out += [f"- `{source}`" for source in doc.sources]
    return "\n".join(out).rstrip() + "\n"


# ---- HTML -------------------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1.5em; color: #1b1b1b; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #e5e5e5; padding-bottom: .2em; margin-top: 2em; }
ul.findings li { margin: .35em 0; }
figure { margin: 1em 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: .6em 0 1.6em; font-size: 13.5px; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #d8d8d8; padding: 3px 9px; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
details { margin: 1em 0; }
code { background: #f4f4f4; padding: 0 .25em; border-radius: 3px; }
section.answer { background: #f3f7fb; border-left: 4px solid #1f77b4; padding: .2em 1.2em .6em; margin: 1em 0 2em; }
section.answer p { font-size: 1.08em; }
section.answer h2 { margin-top: .6em; }
"""


LONG_TABLE = 40  # rows; a longer table is folded (click to open) so the figures stay close together


def html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(column)}</th>" for column in table.columns)
    body = []
    for row in table.rows:
        cells = "".join(f"<td{' class=num' if i >= 3 else ''}>{esc(value)}</td>" for i, value in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<table><caption>{esc(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def inline(text: str) -> str:
    """Escape, then turn Markdown `code` spans into <code>, **bold** into <strong> and [links](href) into <a>."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\[([^\]]+)\]\(([^()\s]+)\)", r'<a href="\2">\1</a>', text)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(doc: Document) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(doc.title)}</h1>",
    ]
    if doc.answer:
        out.append(f'<section id="answer" class="answer"><h2>{ANSWER_HEADING}</h2>')
        out += [f"<p>{inline(' '.join(doc.answer))}</p>"]
        if doc.answer_image is not None:
            out.append(f'<figure><img src="{data_uri(doc.answer_image)}" alt="{ANSWER_HEADING}"></figure>')
        out.append("</section>")
    out += [f"<p>{inline(paragraph)}</p>" for paragraph in doc.intro]
    nested = len(doc.sections) > 1
    h = "h3" if nested else "h2"
    for section in doc.sections:
        if nested:
            out.append(f"<h2>{esc(section.title)}</h2>")
        if section.findings is not None:  # None: a section of pictures only
            out.append(f"<{h}>What the numbers show</{h}>")
            items = [f"<li>{inline(sentence)}</li>" for sentence in section.findings]
            out.append(f"<ul class=findings>{''.join(items) or '<li>(not enough data for any finding)</li>'}</ul>")
        for part in section.parts:
            out.append(f"<{h}>{esc(part.heading)}</{h}>")
            # a blank line ("\n\n") in a part's text starts a new paragraph, as in the Markdown
            out += [f"<p>{inline(paragraph)}</p>" for paragraph in part.text.split("\n\n")]
            if part.image is not None:
                out.append(f'<figure><img src="{data_uri(part.image)}" alt="{esc(part.heading)}"></figure>')
            for table in part.tables:
                if len(table.rows) > LONG_TABLE:
                    summary = f"{esc(table.title)} ({len(table.rows)} rows)"
                    out.append(f"<details><summary>{summary}</summary>{html_table(table)}</details>")
                else:
                    out.append(html_table(table))
    if doc.notes:
        out += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{inline(note)}</li>" for note in doc.notes) + "</ul>"]
    sources = "".join(f"<li><code>{esc(source)}</code></li>" for source in doc.sources)
    out += [
        "<h2>Sources</h2>",
        f"<details><summary>{len(doc.sources)} results.csv files</summary><ul>{sources}</ul></details>",
        "</body></html>",
    ]
    return "\n".join(out) + "\n"
