"""metrics.md: the evaluate step's Markdown summary of one eval dir's metrics.json."""

from __future__ import annotations

import numpy as np

from components.core.metrics import metric_names
from components.core.reporting import format_value, markdown_table


def _value_with_ci(row: dict, name: str) -> str:
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def metrics_markdown(metrics: dict, rows: list[dict]) -> str:
    """A short Markdown summary: overall numbers, the per-domain table, power-user cohorts."""
    ks = metrics["ks"]
    names = metric_names(ks)
    model = metrics["model"]
    lines = [
        f"# Evaluation: {model['scheme']} ({model['loss']} loss)\n",
        f"Full ranking over all {metrics['n_items']} items, {metrics['n_users']} test users, "
        f"pessimistic ties, seen items {'excluded' if metrics['exclude_seen'] else 'kept'}. "
        f"95% bootstrap CIs over users ({metrics['bootstrap']['resamples']} resamples).\n",
        "Coverage: " + ", ".join(f"{k} = {v:.4f}" for k, v in metrics["coverage"].items()) + "\n",
    ]
    adjusted = metrics.get("logit_adjust")
    if adjusted:
        lines.append(
            f"Logit-adjusted scores s + τ·({adjusted['bias']}), τ = {adjusted['tau']:g} chosen on "
            f"the validation split ({adjusted['selected_by']}; drop = "
            f"{adjusted['max_overall_drop']:g}); calibration.json has the whole curve.\n"
        )
    k0 = str(ks[0])
    header = ["cohort", "domain", "θ", "n", *names, f"top-{k0} share", "target share"]
    unlabelled = {d["domain"] for d in metrics.get("domains", []) if d.get("unlabelled")}
    table_rows = []
    for row in rows:
        if row["cohort"] == "power" and row["n"] == 0:
            continue  # a domain without power users at this θ: nothing to report
        is_domain = row["cohort"] == "domain"
        table_rows.append(
            [
                row["cohort"],
                (row["domain"] or "–") + (" (unlabelled)" if row["domain"] in unlabelled else ""),
                format_value(row["theta"], "g"),
                str(row["n"]),
                *(_value_with_ci(row, name) for name in names),
                format_value(metrics["top_share"][k0].get(row["domain"]) if is_domain else None),
                format_value(metrics["target_share"].get(row["domain"]) if is_domain else None),
            ]
        )
    lines.append(markdown_table(header, table_rows))
    return "\n".join(lines)
