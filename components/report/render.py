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
    settings_header, settings_rows = context["settings"]
    lines = [
        "# Variant comparison\n",
        context["intro"] + "\n",
        "## Settings of each variant\n",
        context["settings_note"] + "\n",
        markdown_table(settings_header, settings_rows),
    ]
    if context["verdicts"]:
        lines += ["## Verdicts\n", context["verdict_note"] + "\n"]
        lines += [*[f"- {s}" for s in context["verdicts"]], ""]
    lines += ["## Findings\n", *[f"- {s}" for s in context["sentences"]], ""]
    for metric, (header, rows, _) in context["tables"].items():
        lines += [f"## {metric}: lift vs {context['baseline']} (paired bootstrap 95% CI)\n"]
        lines += [context["legend"] + "\n", markdown_table(header, rows)]
    lines += ["## Runs\n", markdown_table(RUN_HEADER, context["runs"])]
    lines.append(
        "Charts (frontier, per-domain bars, τ curves, training curves, weight trajectories): "
        "report.html; the frontier also as frontier.png\n"
    )
    return "\n".join(lines)


def _figure(svg: str | None, caption: str) -> str:
    return f"<figure>{svg or ''}<figcaption>{html.escape(caption)}</figcaption></figure>"


def html_report(context: dict, charts: dict[str, str | None]) -> str:
    metric = html.escape(context["chart_metric"])
    body = [f"<p>{html.escape(context['intro'])}</p>"]
    body.append("<h2>Settings of each variant</h2>")
    body.append(f"<p>{html.escape(context['settings_note'])}</p>")
    body.append(html_table(*context["settings"]))
    if context["verdicts"]:
        body.append(f"<h2>Verdicts</h2><p>{html.escape(context['verdict_note'])}</p><ul>")
        body += [f"<li>{html.escape(s)}</li>" for s in context["verdicts"]]
        body.append("</ul>")
    if charts.get("frontier"):
        body.append(f"<h2>Frontier: overall vs sparse / dense {metric}</h2>")
        body.append(_figure(charts["frontier"], context["frontier_caption"]))
    body.append("<h2>Findings</h2><ul>")
    body += [f"<li>{html.escape(s)}</li>" for s in context["sentences"]]
    body.append("</ul>")
    body.append(f"<h2>{metric} by domain</h2>")
    body.append(
        _figure(
            charts["domains"],
            f"Bars: each variant's test {context['chart_metric']} on the users whose held-out "
            "item is in the domain; whiskers: 95% bootstrap CI; * marks sparse domains (share "
            "of train interactions below 1/|D|). " + context["view_note"],
        )
    )
    for name, (header, rows, classes) in context["tables"].items():
        body.append(f"<h2>{html.escape(name)}: lift vs {html.escape(context['baseline'])}</h2>")
        body.append(f"<p>{html.escape(context['legend'])}</p>")
        body.append(html_table(header, rows, classes))
    if charts.get("tau"):
        body.append("<h2>Post-hoc logit adjustment: the τ curve</h2>")
        body.append(
            _figure(
                charts["tau"],
                "Validation NDCG overall and averaged over the sparse "
                "domains against τ (solid; τ is chosen on these), the test curves dashed for "
                "the record only; dotted line: the chosen τ.",
            )
        )
    if charts.get("training"):
        body.append(f"<h2>Training curves</h2><figure>{charts['training']}</figure>")
    if charts.get("weights"):
        body.append(
            f"<h2>Domain weight trajectories</h2><figure>{charts['weights']}<figcaption>"
            "Loss weight of each domain after every update (colour from sparsest, dark, to "
            "densest, yellow); variants whose weights never change are not drawn."
            "</figcaption></figure>"
        )
    body.append("<h2>Runs</h2>")
    body.append(html_table(RUN_HEADER, context["runs"]))
    return html_page("dwlrec: variant comparison", "\n".join(body))
