"""The report's document model and its two renderings (GitHub Markdown, one self-contained HTML).

Sections append blocks to a `Doc`; `to_markdown` and `to_html` render the same blocks, so the two
files cannot disagree.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Doc:
    """Blocks of the report: ("h", level, text) | ("p", text) | ("note", text)
    | ("table", header, rows, align, bad_cells) | ("fig", filename, caption)."""

    fig_dir: Path
    blocks: list[tuple] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def section(self, title: str) -> None:
        """A numbered top-level section: "3. Errors by class" when two came before it."""
        number = sum(1 for b in self.blocks if b[0] == "h" and b[1] == 2) + 1
        self.h(2, f"{number}. {title}")

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(("note", text))

    def table(self, header: list[str], rows: list[list[str]], align: str,
              bad: set[tuple[int, int]] = frozenset()) -> None:
        self.blocks.append(("table", header, rows, align, set(bad)))

    def fig(self, name: str, caption: str, half: bool = False) -> Path:
        """Reserve a figure (`half`: two side by side in HTML); the caller draws it at the path."""
        self.figures.append(name)
        self.blocks.append(("fig", name, caption, half))
        return self.fig_dir / name


def slug(text: str) -> str:
    """GitHub-style heading anchor, also used as the HTML id."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\- ]", "", text.strip().lower()))



def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", out)


def to_markdown(doc: Doc, title: str) -> str:
    """The report as GitHub Markdown; figures are relative links into figures/."""
    md = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = [f"# {title}", ""]
    toc = [b[2] for b in doc.blocks if b[0] == "h" and b[1] == 2]
    out += [f"- [{t}](#{slug(t)})" for t in toc] + [""]
    for b in doc.blocks:
        if b[0] == "h":
            out += [f"{'#' * b[1]} {b[2]}", ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "note":
            out += [f"*{b[1]}*", ""]
        elif b[0] == "fig":
            out += [f"![{b[2]}](figures/{b[1]})", "", f"*{b[2]}*", ""]
        elif b[0] == "table":
            _, header, rows, align, bad = b
            out.append("| " + " | ".join(md(h) for h in header) + " |")
            out.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
            for i, row in enumerate(rows):
                cells = [f"**{md(c)}**" if (i, j) in bad else md(c) for j, c in enumerate(row)]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1.5em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: 4px 9px; }
th { background: #eef1f5; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
td.bad { color: #c62828; font-weight: bold; }
figure { margin: 1em 0 1.5em; }
figure.half { display: inline-block; width: 48.5%; margin-right: 1%; vertical-align: top; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 14px; font-style: italic; }
.note { color: #555; font-style: italic; }
nav { background: #f6f8fa; border: 1px solid #ddd; padding: .5em 1.5em; display: inline-block; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; font-size: 90%; }
.scroll { overflow-x: auto; }
"""


def to_html(doc: Doc, title: str) -> str:
    """One self-contained HTML file: inline CSS, figures embedded as base64 data URIs."""
    toc = "".join(f'<li><a href="#{slug(b[2])}">{html.escape(b[2])}</a></li>'
                  for b in doc.blocks if b[0] == "h" and b[1] == 2)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>"]
    for b in doc.blocks:
        if b[0] == "h":
            out.append(f'<h{b[1]} id="{slug(b[2])}">{html.escape(b[2])}</h{b[1]}>')
        elif b[0] == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif b[0] == "note":
            out.append(f'<p class="note">{_inline_html(b[1])}</p>')
        elif b[0] == "fig":
            data = base64.b64encode((doc.fig_dir / b[1]).read_bytes()).decode("ascii")
            cls = ' class="half"' if b[3] else ""
            out.append(f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                       f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
        elif b[0] == "table":
            _, header, rows, align, bad = b
            num = lambda j: ' class="num"' if align[j] == "r" else ""  # noqa: E731
            head = "".join(f"<th{num(j)}>{html.escape(h)}</th>" for j, h in enumerate(header))
            body = []
            for i, row in enumerate(rows):
                cells = []
                for j, c in enumerate(row):
                    cls = " ".join(x for x in ("num" if align[j] == "r" else "",
                                               "bad" if (i, j) in bad else "") if x)
                    attr = f' class="{cls}"' if cls else ""
                    cells.append(f"<td{attr}>{html.escape(c)}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{''.join(body)}</tbody></table></div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def publish(build, title: str, out_dir: Path) -> Path:
    """Run `build(doc)` and write OUT/report.md, OUT/report.html and OUT/figures/; returns report.html.

    Figures are drawn into a temporary directory first and moved in only when the whole report
    rendered, so a failure leaves the previous report intact; figures of an earlier report that
    this one no longer has are removed."""
    import os
    import shutil
    import tempfile

    from fmbench.fileio import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".report-"))
    try:
        doc = Doc(fig_dir=tmp)
        build(doc)
        markdown, page = to_markdown(doc, title), to_html(doc, title)
        fig_out = out_dir / "figures"
        fig_out.mkdir(exist_ok=True)
        for name in doc.figures:
            os.replace(tmp / name, fig_out / name)
        for stale in set(p.name for p in fig_out.glob("*.png")) - set(doc.figures):
            (fig_out / stale).unlink()
        write_text(out_dir / "report.md", markdown)
        write_text(out_dir / "report.html", page)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "report.html"
