"""The report step (SPEC §7): compare the variants' evaluations on the same test users.

Joins the ``per_user.parquet`` of several eval dirs (same dataset, same users), and for every
cohort (overall, each target domain, each domain's power users) gives each variant's Recall@K /
NDCG@K and its lift over the baseline with a PAIRED bootstrap 95% CI (``compare``). A lift is
flagged significant when the CI of the difference excludes 0.

Writes ``comparison.parquet`` (one row per cohort × variant × metric, every domain, plus the
pooled "other sparse/dense domains" cohorts), ``report.md`` and ``report.html`` (the settings
of each variant with its seed spread: ``settings``; a verdict per variant and the frontier of
overall vs sparse-mean / dense-mean lift: ``frontier``, ``frontier_chart``, also written as
``frontier.png``; summary sentences and lift tables over the ``top_domains`` sparsest and
densest domains: ``text``, ``domains_view``; grouped bar chart by domain, training curves and
weight trajectories from the logs the evaluate step copied: ``charts``; the τ curve of post-hoc
logit adjustment; the documents: ``render``) and ``summary.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from components.core.cohorts import cohort_masks
from components.core.eval_artifact import domains_of
from components.errors import ConfigError
from components.io import (
    atomic_dir,
    atomic_file,
    check_output,
    json_safe,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from components.report.charts import chart_domains, chart_training, chart_weights, domain_groups
from components.report.compare import (
    COMPARISON_SCHEMA,
    check_comparable,
    comparison_rows,
    load_variant,
    significance_summary,
    variant_dirs,
)
from components.report.config import report_config
from components.report.domains_view import domain_view, group_cohorts
from components.report.frontier import VERDICT_RULES, eligible_domains, frontier_points
from components.report.frontier_chart import FRONTIER_CAPTION, chart_frontier, chart_tau
from components.report.render import describe_runs, html_report, markdown_report
from components.report.settings import settings_table, variant_settings
from components.report.text import lift_table, summary_sentence, verdict_line

log = logging.getLogger("dwlrec.report")

COMPARISON_FILE = "comparison.parquet"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SUMMARY_FILE = "summary.json"
FRONTIER_PNG = "frontier.png"

SETTINGS_NOTE = (
    "From each run's metrics.json (the model's config.json as the evaluate step summarised "
    "it; τ: the post-hoc logit adjustment's chosen τ). A setting that differs between a "
    "variant's runs is shown as 'a / b'; '-': not applicable. The metric column is the pooled "
    "value (each user's metric averaged over the runs) with its bootstrap 95% CI over users; "
    "beside it the spread over the runs (seeds): sd (ddof 1) and min–max of each run's value."
)
VERDICT_NOTE = (
    "One line per variant from its {metric} lifts: overall, and the lift of the mean over the "
    "sparse (dense) domains with test users, each domain weighted equally; paired bootstrap "
    "95% CIs; significant when the CI excludes 0 and the users number at least {min_users}. "
    "Rules, {rules}"
)


def _intro(base, runs: list, domains, bootstrap: int, seed: int) -> str:
    return (
        f"{base.per_user.num_rows} test users, full ranking over "
        f"{base.metrics.get('n_items')} items, seen items "
        f"{'excluded (masked)' if base.metrics.get('exclude_seen') else 'kept'} in every run "
        "(train's validation and evaluate alike); paired bootstrap over "
        f"users ({bootstrap} resamples, seed {seed})"
        + (
            "; a variant with several eval dirs (seeds) is scored by each user's metric "
            "averaged over its runs"
            if any(len(v.runs) > 1 for v in runs)
            else ""
        )
        + f". {len(domains.domains)} domains; sparse: "
        + _names(domains.sparse_domains())
        + "."
    )


def _names(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _view_note(view, top: int, min_users: int) -> str:
    if not (view.other_sparse or view.other_dense):
        return "Every domain with test users is shown."
    return (
        f"Shown: the {top} sparsest and the {top} densest domains with at least {min_users} "
        f"test users; the other {len(view.other_sparse)} sparse and {len(view.other_dense)} "
        "dense domains are pooled into one row each (the union of their test users, its own "
        "CI); comparison.parquet has every domain."
    )


def report(
    evals: Mapping[str, str | list[str]],
    output_dir: str,
    *,
    overwrite: bool = False,
    **options,
) -> dict:
    """Compare eval dirs ``{variant name: dir(s)}`` against ``baseline``; write the report dir.

    ``options``: any ReportConfig field (baseline, bootstrap, seed, k, min_users; its defaults);
    an unknown name is a ConfigError. ``output_dir`` may replace only a previous report output
    unless ``overwrite``, and never one of the eval dirs (checked before anything is read;
    components.io).

    Several dirs for one name (a list or "d1,d2") are runs of that variant (e.g. seeds): each
    user's metric is averaged over them before the paired bootstrap.
    """
    config = report_config(**options)
    baseline, bootstrap, seed, k = config.baseline, config.bootstrap, config.seed, config.k
    min_users = config.min_users
    if not evals:
        raise ConfigError("--eval: give at least one NAME=DIR")
    if baseline not in evals:
        raise ConfigError(f"--baseline {baseline!r} is not one of the --eval names {list(evals)}")
    names = [baseline, *[n for n in evals if n != baseline]]
    inputs = [path for name in names for path in variant_dirs(evals[name])]
    output: dict[str, Any] = {"step": "report", "inputs": inputs, "overwrite": overwrite}
    check_output(output_dir, **output)
    runs = [load_variant(name, evals[name]) for name in names]
    check_comparable([run for variant in runs for run in variant.runs])
    base = runs[0]
    domains = domains_of(base.metrics)
    metrics = [f"ndcg@{k}", f"recall@{k}"]
    masks = {
        key["domain"]: mask
        for key, mask in cohort_masks(base.per_user, domains)
        if key["cohort"] == "domain"
    }
    counts = {d: int(m.sum()) for d, m in masks.items()}
    view = domain_view(domains, counts, config.top_domains, min_users)
    pooled = group_cohorts(masks, view)
    rows = comparison_rows(runs, base, domains, metrics, bootstrap, seed, min_users, pooled)
    sentences = [
        summary_sentence(rows, run.name, baseline, metric) for run in runs[1:] for metric in metrics
    ]
    overall = {
        r["variant"]: r for r in rows if r["cohort"] == "overall" and r["metric"] == metrics[0]
    }
    eligible = eligible_domains(domains, masks)
    points = frontier_points(
        runs[1:], base, masks, eligible, overall, metrics[0], bootstrap, seed, min_users
    )
    verdicts = [verdict_line(n, p, baseline, metrics[0]) for n, p in points.items()]
    settings = variant_settings(runs, overall, metrics[0])
    context = {
        "baseline": baseline,
        "runs": describe_runs(runs),
        "intro": _intro(base, runs, domains, bootstrap, seed),
        "settings": settings_table(settings),
        "settings_note": SETTINGS_NOTE,
        "verdicts": verdicts,
        "verdict_note": VERDICT_NOTE.format(
            metric=metrics[0], min_users=min_users, rules=VERDICT_RULES.format(baseline=baseline)
        ),
        "frontier_caption": FRONTIER_CAPTION.format(
            metric=metrics[0], baseline=baseline, sides="sparse (left) / dense (right) domains"
        ),
        "sentences": sentences,
        "tables": {m: lift_table(rows, names, baseline, m, view) for m in metrics},
        "legend": (
            "▲/▼: significant gain/loss (the 95% CI of the difference excludes 0 — one that "
            f"touches 0 is not significant — and the cohort has at least {min_users} users). "
            "Cohorts with no users, and rows where every variant scores exactly 0, are omitted. "
            + _view_note(view, config.top_domains, min_users)
        ),
        "view_note": _view_note(view, config.top_domains, min_users),
        "chart_metric": metrics[0],
    }
    frontier = chart_frontier(points, baseline, metrics[0])
    charts = {
        "frontier": frontier[0] if frontier else None,
        "domains": chart_domains(
            runs, domain_groups(base.per_user, domains, view), metrics[0], bootstrap, seed
        ),
        "tau": chart_tau(runs),
        "training": chart_training(runs),
        "weights": chart_weights(runs, domains),
    }
    summary = {
        "output_dir": str(output_dir),
        "baseline": baseline,
        "variants": names,
        "n_users": base.per_user.num_rows,
        "exclude_seen": bool(base.metrics.get("exclude_seen")),  # the one protocol of every run
        "findings": sentences,
        "verdicts": {n: p["verdict"] for n, p in points.items()},
        "frontier": {"metric": metrics[0], "domains": eligible, "variants": points},
        "settings": settings,
        "shown_domains": {
            "sparse": view.sparse,
            "dense": view.dense,
            "other_sparse": view.other_sparse,
            "other_dense": view.other_dense,
        },
        "significant": significance_summary(rows, runs[1:], metrics),
    }
    with atomic_dir(output_dir, **output) as staging:
        write_parquet_atomic(
            pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA), staging / COMPARISON_FILE
        )
        write_text_atomic(staging / REPORT_MD, markdown_report(context))
        write_text_atomic(staging / REPORT_HTML, html_report(context, charts))
        if frontier:
            with atomic_file(staging / FRONTIER_PNG) as out:
                out.write(frontier[1])
        write_json_atomic(staging / SUMMARY_FILE, json_safe(summary))
    log.info("report of %s vs %s → %s", names[1:], baseline, output_dir)
    return summary
