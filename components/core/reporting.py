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


def new_figure(width: float = 8.0, height: float = 4.0):
    """A matplotlib (figure, axes) pair on the Agg backend."""
    return pyplot().subplots(figsize=(width, height))


def figure_to_svg(fig) -> str:
    """Render ``fig`` as an ``<svg …>`` element to inline in HTML (deterministic bytes); closes it."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": "dwlrec", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and doctype


def format_value(value, spec: str = ".4f") -> str:
    """Format a cell: None/NaN → '–', floats with ``spec``, everything else with str()."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table from already formatted cells ('|' escaped)."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)]) + "\n"


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
