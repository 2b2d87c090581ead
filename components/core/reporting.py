"""Small helpers for the Markdown / HTML reports of the steps: tables, inline SVG charts, a page.

matplotlib is imported lazily (only when a chart is drawn) and always with the Agg backend, so
reports render on headless machines and inside containers.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (headless machines, containers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float = 8.0, height: float = 4.0, **subplots):
    """A matplotlib (figure, axes) pair on the Agg backend; ``subplots``: more of
    ``plt.subplots``' arguments (``ncols=2, sharey=True``…)."""
    return pyplot().subplots(figsize=(width, height), **subplots)


def figure_bytes(fig, fmt: str = "svg", dpi: float | None = None, tight: bool = True) -> bytes:
    """``fig`` saved as ``fmt`` (svg, png); deterministic bytes (fixed SVG hash salt, no date).

    ``tight``: crop to the drawn area (``bbox_inches="tight"``); ``dpi``: the figure's when None."""
    plt = pyplot()
    buffer = io.BytesIO()
    options: dict[str, object] = {"dpi": dpi} if dpi is not None else {}
    if tight:
        options["bbox_inches"] = "tight"
    with plt.rc_context({"svg.hashsalt": "dwlrec", "svg.fonttype": "none"}):
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else {}, **options)
    return buffer.getvalue()


def svg_element(svg: str | bytes) -> str:
    """An SVG document as the ``<svg …>`` element to inline in HTML (prolog and doctype dropped)."""
    text = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    return text[text.index("<svg") :]


def figure_to_svg(fig, close: bool = True, **options) -> str:
    """Render ``fig`` as an ``<svg …>`` element to inline in HTML (deterministic bytes); closes it
    unless ``close=False``. ``options``: ``figure_bytes``' dpi and tight."""
    svg = figure_bytes(fig, "svg", **options)
    if close:
        pyplot().close(fig)
    return svg_element(svg)


def format_value(value, spec: str = ".4f") -> str:
    """Format a cell: None/NaN → '–', floats with ``spec``, everything else with str()."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """A GitHub-flavoured Markdown table from already formatted cells ('|' escaped);
    ``right`` (optional, per column) right-aligns the columns marked True."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = ["---:" if right and right[i] else "---" for i in range(len(header))]
    return "\n".join([line(header), line(rule), *(line(r) for r in rows)]) + "\n"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], classes=None) -> str:
    """An HTML table from formatted cells; ``classes`` (optional, per row) sets each row's class."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{html.escape(classes[i])}"' if classes and classes[i] else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
tr.gain td { background: #e7f6e7; }
tr.loss td { background: #fbe9e9; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page (no external assets) around ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{PAGE_STYLE}</style>\n</head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )
