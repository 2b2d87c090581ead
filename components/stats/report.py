"""The stats step's human-readable summary: report.md, report.html and the bar chart.

The chart (matplotlib, Agg backend) shows each domain's share of train interactions next to the
target weight of each scheme, sparsest domain on top, so a reader sees at a glance which domains
get boosted. The HTML embeds it as inline SVG (one self-contained file, a KFP HTML artifact);
the Markdown links the PNG written beside it.

Unlabelled domains (items without a known domain, e.g. ``(none)``; column ``unlabelled``) are a
cohort of their own: marked in the chart, listed after the domains in the tables, and named in
the summary with their size, since every scheme leaves them at weight 1.
"""

from __future__ import annotations

import html
from pathlib import Path

import pyarrow as pa

from components.core.reporting import (
    figure_bytes,
    html_page,
    html_table,
    markdown_table,
    new_figure,
    pyplot,
    svg_element,
)
from components.io import write_text_atomic

CHART_PNG = "domain_weights.png"
MAX_CHART_DOMAINS = 60  # beyond this the chart shows the 30 sparsest and 30 densest
WEIGHT_COLUMNS = (
    ("weight_inverse", "inverse"),
    ("weight_composite", "composite"),
    ("weight_fixed", "fixed"),
)


def _chart_rows(rows: list[dict]) -> tuple[list[dict], bool]:
    if len(rows) <= MAX_CHART_DOMAINS:
        return rows, False
    half = MAX_CHART_DOMAINS // 2
    return rows[:half] + rows[-half:], True


def render_chart(rows: list[dict]):
    """A matplotlib figure: shares (left) and scheme weights (right), sparsest domain on top."""
    import numpy as np

    rows, _ = _chart_rows(rows)
    names = [r["domain"] + (" (unlabelled)" if r.get("unlabelled") else "") for r in rows]
    y = np.arange(len(rows))
    fig, (ax_share, ax_weight) = new_figure(
        11, 1.5 + 0.32 * len(rows), ncols=2, sharey=True, gridspec_kw={"width_ratios": [1, 1.4]}
    )
    ax_share.barh(y, [100 * (r["p_d"] or 0.0) for r in rows], color="#7f7f7f")
    ax_share.set_xlabel("share of train interactions p_d (%)")
    ax_share.set_yticks(y, names)
    ax_share.invert_yaxis()  # sparsest first, on top
    height = 0.8 / len(WEIGHT_COLUMNS)
    colours = ("#d62728", "#1f77b4", "#2ca02c")
    for k, ((column, label), colour) in enumerate(zip(WEIGHT_COLUMNS, colours, strict=True)):
        ax_weight.barh(
            y - 0.4 + height * (k + 0.5),
            [r[column] for r in rows],
            height=height,
            color=colour,
            label=label,
        )
    ax_weight.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax_weight.set_xlabel("target weight w_d (1 = unweighted)")
    ax_weight.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False)
    fig.suptitle("Domains, sparsest on top: share of interactions and weight per scheme")
    fig.tight_layout()
    return fig


def _fmt(value, spec: str) -> str:
    if value is None:
        return "–"
    if spec == "%":  # shares span 0.01% … 50%: three significant digits
        return f"{100 * value:.3g}%"
    return format(value, spec)


def _table_columns(table: pa.Table) -> list[tuple[str, str, str]]:
    """(column, header, format) of the summary table."""
    columns = [
        ("domain", "domain", "s"),
        ("n_d", "n_d", ",d"),
        ("p_d", "p_d", "%"),
        ("u_d", "users", ",d"),
        ("i_d", "items", ",d"),
        ("idf_d", "IDF", ".2f"),
        ("user_ratio", "user ratio", ".3f"),
        ("entropy", "H", ".3f"),
    ]
    columns += [
        (c, c.replace("power_users_", "power θ="), ",d")
        for c in table.column_names
        if c.startswith("power_users_")
    ]
    columns += [
        ("weight_fixed", "w fixed", ".2f"),
        ("weight_inverse", "w inverse", ".3f"),
        ("weight_composite", "w composite", ".3f"),
    ]
    return columns


def _cell(row: dict, column: str, spec: str) -> str:
    value = row[column]
    if column == "domain":
        return (
            str(value)
            + (" (unlabelled)" if row.get("unlabelled") else "")
            + (" (no train data)" if row["no_train_interactions"] else "")
        )
    return _fmt(value, spec)


def _split_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(domains, unlabelled cohort), each in the table's order (sparsest first)."""
    return [r for r in rows if not r.get("unlabelled")], [r for r in rows if r.get("unlabelled")]


def _unlabelled_line(document: dict) -> str | None:
    names = document["params"].get("unlabelled_domains") or []
    if not names:
        return None
    stats = document["domain_stats"]

    def count(n: int, noun: str) -> str:
        return f"{n:,} {noun}{'' if n == 1 else 's'}"

    parts = [
        f"{d} ({count(stats[d]['items'], 'item')}, "
        f"{count(stats[d]['n'], 'train interaction')}, p_d {_fmt(stats[d]['share'], '%')}, "
        f"{count(stats[d]['users'], 'user')})"
        for d in names
        if d in stats
    ]
    return (
        "Unlabelled (items without a known domain, reported as their own cohort): "
        + "; ".join(parts)
        + ". Weight 1 under every scheme, left out of every target's normalisation and of the "
        "default fixed set (stats --boost-unlabelled to weight them like a domain)."
    )


def _summary_lines(document: dict, truncated: bool) -> list[str]:
    params = document["params"]
    lines = [
        f"Train split: {document['n_train_interactions']:,} interactions, "
        f"{document['n_train_users']:,} users, {len(document['domains'])} domains. "
        "An interaction counts once in each domain of its item.",
        f"Schemes: inverse (γ={params['gamma']:g}, clip [{params['w_min']:g}, "
        f"{params['w_max']:g}], interaction-weighted mean 1); composite (λ={params['lambdas']}, "
        f"α={params['alpha']:g}); fixed (w={params['fixed_weight']:g} on "
        f"{', '.join(params['fixed_domains']) or 'no domain'}; {params['fixed_domains_rule']}). "
        f"dynamic moves from 1.0 toward the {params['target']} target (β={params['beta']:g}).",
    ]
    unlabelled = _unlabelled_line(document)
    if unlabelled:
        lines.append(unlabelled)
    if document["zero_train_domains"]:
        lines.append(
            f"Domains without train interactions (weight 1, excluded from every target): "
            f"{', '.join(document['zero_train_domains'])}."
        )
    if truncated:
        lines.append(f"The chart shows the {MAX_CHART_DOMAINS // 2} sparsest and densest domains.")
    return lines


def _tables(table: pa.Table) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, domain rows, unlabelled cohort rows) of the summary table, cells formatted."""
    columns = _table_columns(table)
    domains, unlabelled = _split_rows(table.to_pylist())

    def cells(rows: list[dict]) -> list[list[str]]:
        return [[_cell(row, c, f) for c, _, f in columns] for row in rows]

    return [h for _, h, _ in columns], cells(domains), cells(unlabelled)


COHORT_TITLE = "Unlabelled cohort (not a domain; weight 1 under every scheme)"


def markdown_report(table: pa.Table, document: dict, chart_name: str = CHART_PNG) -> str:
    header, domains, unlabelled = _tables(table)
    right = [c != "domain" for c, _, _ in _table_columns(table)]
    lines = [
        "# Domain sparsity statistics",
        "",
        *_summary_lines(document, table.num_rows > MAX_CHART_DOMAINS),
        "",
        f"![share and weight per domain]({chart_name})",
        "",
        "Domains sorted from sparsest to densest:",
        "",
        markdown_table(header, domains, right),
    ]
    if unlabelled:
        lines += [f"{COHORT_TITLE}:", "", markdown_table(header, unlabelled, right)]
    return "\n".join(lines)


def html_report(table: pa.Table, document: dict, svg: str) -> str:
    header, domains, unlabelled = _tables(table)
    summary = "".join(
        f"<p>{html.escape(line)}</p>"
        for line in _summary_lines(document, table.num_rows > MAX_CHART_DOMAINS)
    )
    body = (
        f"{summary}\n<figure>{svg_element(svg)}<figcaption>Share of train interactions and target "
        "weight per scheme; sparsest\ndomain on top; dashed line = weight 1.</figcaption></figure>\n"
        f"<h2>Domains, sparsest to densest</h2>\n{html_table(header, domains)}\n"
    )
    if unlabelled:
        body += f"<h2>{html.escape(COHORT_TITLE)}</h2>\n{html_table(header, unlabelled)}\n"
    return html_page("Domain sparsity statistics", body)


def write_reports(directory: Path, table: pa.Table, document: dict) -> None:
    """Write report.md, report.html and the chart PNG into ``directory``."""
    fig = render_chart(table.to_pylist())
    try:
        svg = figure_bytes(fig, "svg", dpi=110, tight=False).decode("utf-8")
        (directory / CHART_PNG).write_bytes(figure_bytes(fig, "png", dpi=110, tight=False))
    finally:
        pyplot().close(fig)
    write_text_atomic(directory / "report.md", markdown_report(table, document))
    write_text_atomic(directory / "report.html", html_report(table, document, svg))
