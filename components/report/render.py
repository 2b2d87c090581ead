"""report.md and report.html: the documents around the comparison's sentences, tables and
charts (the ``context`` the entry point builds)."""

from __future__ import annotations

import html

from components.core.reporting import format_value, html_page, html_table, markdown_table
from components.report.compare import Variant


def describe_runs(variants: list[Variant]) -> list[list[str]]:
    rows = []
    for run in (run for v in variants for run in v.runs):
        model = run.metrics.get("model", {})
        rows.append(
            [
                run.name,
                run.scheme,
                _weighting(model.get("weighting") or {}),
                str(model.get("loss", "?")),
                _settings(model.get("model") or {}, MODEL_SETTINGS),
                _settings(
                    {
                        **(model.get("train") or {}),
                        "precision": model.get("precision"),
                        "device": model.get("device"),
                    },
                    None,
                ),
                format_value(model.get("best_epoch")),
                format_value(model.get("epochs_run")),
                str(run.path),
            ]
        )
    return rows


MODEL_SETTINGS = (
    "max_len",
    "d_model",
    "n_blocks",
    "n_heads",
    "dropout",
    "norm",
    "emb_norm",
    "scale_emb",
    "init_std",
)


def _weighting(values: dict) -> str:
    """The parameters that shaped a run's weights (``-`` for the unweighted one)."""
    return _settings(values, None) if values else "-"


def _settings(values: dict, names) -> str:
    """``name=value`` pairs of a run's settings (all of ``values`` when ``names`` is None)."""
    names = names or list(values)
    return ", ".join(f"{n}={values[n]}" for n in names if values.get(n) is not None) or "?"


RUN_HEADER = [
    "variant",
    "scheme",
    "weighting",
    "loss",
    "model",
    "training",
    "best epoch",
    "epochs run",
    "eval dir",
]


def markdown_report(context: dict) -> str:
    lines = [
        "# Variant comparison\n",
        context["intro"] + "\n",
        markdown_table(RUN_HEADER, context["runs"]),
        "## Findings\n",
        *[f"- {s}" for s in context["sentences"]],
        "",
    ]
    for metric, (header, rows, _) in context["tables"].items():
        lines += [f"## {metric}: lift vs {context['baseline']} (paired bootstrap 95% CI)\n"]
        lines += [context["legend"] + "\n", markdown_table(header, rows)]
    lines.append("Charts (per-domain bars, training curves, weight trajectories): report.html\n")
    return "\n".join(lines)


def html_report(context: dict, charts: dict[str, str | None]) -> str:
    body = [f"<p>{html.escape(context['intro'])}</p>"]
    body.append(html_table(RUN_HEADER, context["runs"]))
    body.append("<h2>Findings</h2><ul>")
    body += [f"<li>{html.escape(s)}</li>" for s in context["sentences"]]
    body.append("</ul>")
    body.append(f"<h2>{html.escape(context['chart_metric'])} by domain</h2>")
    body.append(
        f"<figure>{charts['domains']}<figcaption>Bars: each variant's test "
        f"{html.escape(context['chart_metric'])} on the users whose held-out item is in "
        "the domain; whiskers: 95% bootstrap CI; * marks sparse domains (share of train "
        "interactions below 1/|D|).</figcaption></figure>"
    )
    for metric, (header, rows, classes) in context["tables"].items():
        body.append(f"<h2>{html.escape(metric)}: lift vs {html.escape(context['baseline'])}</h2>")
        body.append(f"<p>{html.escape(context['legend'])}</p>")
        body.append(html_table(header, rows, classes))
    if charts.get("training"):
        body.append(f"<h2>Training curves</h2><figure>{charts['training']}</figure>")
    if charts.get("weights"):
        body.append(
            f"<h2>Domain weight trajectories</h2><figure>{charts['weights']}<figcaption>"
            "Loss weight of each domain after every update (colour from sparsest, dark, to "
            "densest, yellow); variants whose weights never change are not drawn."
            "</figcaption></figure>"
        )
    return html_page("dwlrec: variant comparison", "\n".join(body))
