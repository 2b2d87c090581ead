"""The report step (SPEC §7): compare the variants' evaluations on the same test users.

Joins the ``per_user.parquet`` of several eval dirs (same dataset, same users), and for every
cohort (overall, each target domain, each domain's power users) gives each variant's Recall@K /
NDCG@K and its lift over the baseline with a PAIRED bootstrap 95% CI (``compare``). A lift is
flagged significant when the CI of the difference excludes 0.

Writes ``comparison.parquet`` (one row per cohort × variant × metric), ``report.md`` and
``report.html`` (summary sentences and lift tables: ``text``; grouped bar chart by domain,
training curves and weight trajectories from the logs the evaluate step copied: ``charts``;
the documents: ``render``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from components.core.eval_artifact import domains_of
from components.errors import ConfigError
from components.io import (
    atomic_dir,
    check_output,
    json_safe,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from components.report.charts import chart_domains, chart_training, chart_weights
from components.report.compare import (
    COMPARISON_SCHEMA,
    check_comparable,
    comparison_rows,
    load_variant,
    significance_summary,
    variant_dirs,
)
from components.report.config import report_config
from components.report.render import describe_runs, html_report, markdown_report
from components.report.text import lift_table, summary_sentence

log = logging.getLogger("dwlrec.report")

COMPARISON_FILE = "comparison.parquet"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SUMMARY_FILE = "summary.json"


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
    rows = comparison_rows(runs, base, domains, metrics, bootstrap, seed, min_users)
    sentences = [
        summary_sentence(rows, run.name, baseline, metric) for run in runs[1:] for metric in metrics
    ]
    context = {
        "baseline": baseline,
        "runs": describe_runs(runs),
        "intro": (
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
            + ". Sparse domains: "
            f"{', '.join(domains.sparse_domains()) or 'none'}."
        ),
        "sentences": sentences,
        "tables": {m: lift_table(rows, names, baseline, m) for m in metrics},
        "legend": (
            "▲/▼: significant gain/loss (the 95% CI of the difference excludes 0 and the "
            f"cohort has at least {min_users} users). Cohorts with no users are omitted."
        ),
        "chart_metric": metrics[0],
    }
    charts = {
        "domains": chart_domains(runs, domains, metrics[0], bootstrap, seed),
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
        "significant": significance_summary(rows, runs[1:], metrics),
    }
    with atomic_dir(output_dir, **output) as staging:
        write_parquet_atomic(
            pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA), staging / COMPARISON_FILE
        )
        write_text_atomic(staging / REPORT_MD, markdown_report(context))
        write_text_atomic(staging / REPORT_HTML, html_report(context, charts))
        write_json_atomic(staging / SUMMARY_FILE, json_safe(summary))
    log.info("report of %s vs %s → %s", names[1:], baseline, output_dir)
    return summary
