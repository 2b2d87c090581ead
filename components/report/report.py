"""The report step (SPEC §7): compare the variants' evaluations on the same test users.

Joins the ``per_user.parquet`` of several eval dirs (same dataset, same users), and for every
cohort (overall, each target domain, each domain's power users) gives each variant's Recall@K /
NDCG@K and its lift over the baseline with a PAIRED bootstrap 95% CI: every resample draws one
set of users and scores every variant on it, so the noise the variants share cancels. A lift is
flagged significant when the CI of the difference excludes 0.

Writes ``comparison.parquet`` (one row per cohort × variant × metric), ``report.md`` and
``report.html`` (summary sentences, grouped bar chart by domain, lift tables, training curves and
weight trajectories from the logs the evaluate step copied).
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.download import localize
from components.errors import ConfigError, InputError
from components.evaluate.evaluate import (
    METRICS_FILE,
    PER_USER_FILE,
    DomainStats,
    cohort_key_str,
    cohort_masks,
    theta_name,
)
from components.evaluate.metrics import (
    bootstrap_ci,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
    stable_seed,
)
from components.io import (
    atomic_dir,
    check_output,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from components.reporting import (
    figure_to_svg,
    format_value,
    html_page,
    html_table,
    markdown_table,
    new_figure,
    pyplot,
)

log = logging.getLogger(__name__)

COMPARISON_FILE = "comparison.parquet"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
SUMMARY_FILE = "summary.json"
# Cohorts smaller than this are never flagged significant (our choice; --min-users).
MIN_USERS = 20


@dataclass
class EvalRun:
    """One evaluate step output dir, loaded."""

    name: str
    path: Path
    metrics: dict
    per_user: pa.Table  # sorted by user_idx
    train_log: list[dict]
    weights_history: list[dict]

    @property
    def scheme(self) -> str:
        return self.metrics.get("model", {}).get("scheme", "unknown")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON line ({exc})") from exc


@dataclass
class Variant:
    """A named variant: one eval dir, or several (e.g. training seeds) averaged per user."""

    name: str
    runs: list[EvalRun]

    @property
    def scheme(self) -> str:
        return self.runs[0].scheme

    @property
    def per_user(self) -> pa.Table:
        return self.runs[0].per_user

    @property
    def metrics(self) -> dict:
        return self.runs[0].metrics

    def values(self, metric: str) -> np.ndarray:
        """Per-user ``metric`` ("ndcg@10"…), averaged over the variant's runs."""
        return np.mean([metric_values(r.per_user["rank"].to_numpy(), metric) for r in self.runs], 0)


def load_eval(name: str, path: str | Path) -> EvalRun:
    root = localize(path)
    missing = [n for n in (METRICS_FILE, PER_USER_FILE) if not (root / n).exists()]
    if missing:
        raise InputError(f"{root} (--eval {name}): not an evaluate step output, missing {missing}")
    try:
        metrics = json.loads((root / METRICS_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{root / METRICS_FILE}: invalid JSON ({exc})") from exc
    per_user = pq.read_table(root / PER_USER_FILE).sort_by("user_idx")
    history_path = root / "weights_history.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    return EvalRun(name, root, metrics, per_user, _read_jsonl(root / "train_log.jsonl"), history)


def variant_dirs(dirs: str | list[str]) -> list[str]:
    """One eval dir, a list of them, or a comma-separated string of them → the list."""
    return list(dirs) if isinstance(dirs, list | tuple) else [d for d in str(dirs).split(",") if d]


def load_variant(name: str, dirs: str | list[str]) -> Variant:
    """``dirs``: one eval dir, a list of them, or a comma-separated string of them."""
    paths = variant_dirs(dirs)
    if not paths:
        raise ConfigError(f"--eval {name}: no eval dir given")
    return Variant(name, [load_eval(name, path) for path in paths])


def check_comparable(runs: list[EvalRun]) -> None:
    """Same dataset, same test users and targets, same candidate set (exclude_seen)."""
    first = runs[0]
    for run in runs[1:]:
        if run.metrics.get("dataset") != first.metrics.get("dataset"):
            raise ConfigError(
                f"--eval {run.name} ({run.path}) was evaluated on another dataset "
                f"({run.metrics.get('dataset')}) than --eval {first.name} "
                f"({first.metrics.get('dataset')})"
            )
        if run.metrics.get("exclude_seen") != first.metrics.get("exclude_seen"):
            raise ConfigError(
                f"--eval {run.name} and --eval {first.name} differ in --exclude-seen: "
                "their ranks are not comparable"
            )
        same_users = run.per_user["user_idx"].equals(first.per_user["user_idx"]) and run.per_user[
            "target_item_idx"
        ].equals(first.per_user["target_item_idx"])
        if not same_users:
            raise ConfigError(
                f"--eval {run.name} and --eval {first.name} rank different test users/targets"
            )


def metric_values(ranks: np.ndarray, metric: str) -> np.ndarray:
    name, k = metric.split("@")
    return {"recall": recall_at_k, "ndcg": ndcg_at_k}[name](ranks, int(k))


def comparison_rows(
    variants: list[Variant],
    baseline: Variant,
    stats: DomainStats,
    metrics,
    bootstrap: int,
    seed: int,
    min_users: int = MIN_USERS,
) -> list[dict]:
    """One row per cohort × variant × metric with the paired bootstrap lift vs the baseline.

    ``significant``: the difference's CI excludes 0 AND the cohort has >= ``min_users`` users
    (a percentile bootstrap over a handful of users gives degenerate, overconfident CIs).
    """
    sparse = set(stats.sparse_domains())
    base_values = {m: baseline.values(m) for m in metrics}
    variant_values = {(v.name, m): v.values(m) for v in variants for m in metrics}
    rows = []
    for key, mask in cohort_masks(baseline.per_user, stats):
        # one seed per cohort: every variant and metric sees the same resampled users
        cohort_seed = stable_seed(seed, cohort_key_str(key))
        for variant in variants:
            for metric in metrics:
                values = variant_values[(variant.name, metric)][mask]
                paired = paired_bootstrap(values, base_values[metric][mask], bootstrap, cohort_seed)
                ci = bootstrap_ci(values, bootstrap, cohort_seed)
                rows.append(
                    {
                        **key,
                        "sparse": key["domain"] in sparse if key["domain"] else None,
                        "n": int(mask.sum()),
                        "variant": variant.name,
                        "scheme": variant.scheme,
                        "runs": len(variant.runs),
                        "metric": metric,
                        "value": paired["variant"],
                        "value_low": float(ci[0]),
                        "value_high": float(ci[1]),
                        "baseline_value": paired["baseline"],
                        "delta": paired["delta"],
                        "delta_low": paired["delta_ci"][0],
                        "delta_high": paired["delta_ci"][1],
                        "lift": paired["lift"],
                        "lift_low": paired["lift_ci"][0],
                        "lift_high": paired["lift_ci"][1],
                        "significant": paired["significant"] and int(mask.sum()) >= min_users,
                    }
                )
    return rows


COMPARISON_SCHEMA = pa.schema(
    [
        ("cohort", pa.string()),
        ("domain", pa.string()),
        ("theta", pa.float64()),
        ("sparse", pa.bool_()),
        ("n", pa.int64()),
        ("variant", pa.string()),
        ("scheme", pa.string()),
        ("runs", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("value_low", pa.float64()),
        ("value_high", pa.float64()),
        ("baseline_value", pa.float64()),
        ("delta", pa.float64()),
        ("delta_low", pa.float64()),
        ("delta_high", pa.float64()),
        ("lift", pa.float64()),
        ("lift_low", pa.float64()),
        ("lift_high", pa.float64()),
        ("significant", pa.bool_()),
    ]
)


# --------------------------------------------------------------------------- words


def _pct(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value * 100:+.1f}%"


def _lift_text(row: dict) -> str:
    """'+12.3% [+1.0%, +25.0%]' (or the absolute delta when the baseline is 0)."""
    if row["n"] == 0:
        return "–"
    if np.isnan(row["lift"]):
        return f"Δ {row['delta']:+.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}]"
    if np.isnan(row["lift_low"]):  # some resample had a zero baseline: CI of the difference
        return (
            f"{_pct(row['lift'])} (Δ {row['delta']:+.4f} "
            f"[{row['delta_low']:+.4f}, {row['delta_high']:+.4f}])"
        )
    return f"{_pct(row['lift'])} [{_pct(row['lift_low'])}, {_pct(row['lift_high'])}]"


def _direction(row: dict) -> str:
    if not row["significant"]:
        return ""
    return "▲" if row["delta"] > 0 else "▼"


def summary_sentence(rows: list[dict], variant: str, baseline: str, metric: str) -> str:
    """How the variant moved ``metric`` in sparse domains, dense domains and overall."""
    mine = [r for r in rows if r["variant"] == variant and r["metric"] == metric]
    domains = [r for r in mine if r["cohort"] == "domain" and r["n"] > 0]
    overall = next(r for r in mine if r["cohort"] == "overall")

    def change(r: dict) -> str:
        # a lift is undefined when the baseline scored 0: give the absolute change instead
        return _pct(r["lift"]) if not np.isnan(r["lift"]) else f"{r['delta']:+.4f} from 0"

    def part(group: list[dict], label: str) -> str:
        gains = [r for r in group if r["significant"] and r["delta"] > 0]
        losses = [r for r in group if r["significant"] and r["delta"] < 0]
        gains_text = ", ".join(f"{r['domain']} {change(r)}" for r in gains)
        losses_text = ", ".join(f"{r['domain']} {change(r)}" for r in losses)
        return (
            f"{label}: significant gains in {len(gains)} of {len(group)}"
            + (f" ({gains_text})" if gains else "")
            + f", significant losses in {len(losses)}"
            + (f" ({losses_text})" if losses else "")
        )

    sparse = [r for r in domains if r["sparse"]]
    dense = [r for r in domains if not r["sparse"]]
    verdict = "significant" if overall["significant"] else "not significant"
    return (
        f"{variant} vs {baseline} ({metric}): "
        + part(sparse, "sparse domains")
        + "; "
        + part(dense, "dense domains")
        + f"; overall {overall['value']:.4f} vs {overall['baseline_value']:.4f}, "
        f"{_lift_text(overall)} ({verdict})."
    )


# --------------------------------------------------------------------------- tables


def lift_table(rows: list[dict], variants: list[str], baseline: str, metric: str):
    """(header, rows, row classes) for one metric: cohorts down, variants across."""
    index = {}
    for r in rows:
        if r["metric"] == metric:
            index[(r["cohort"], r["domain"], r["theta"], r["variant"])] = r
    cohorts = []
    for r in rows:
        key = (r["cohort"], r["domain"], r["theta"])
        if r["metric"] == metric and r["variant"] == baseline and key not in cohorts:
            cohorts.append(key)
    others = [v for v in variants if v != baseline]
    header = ["cohort", "n", baseline, *[h for v in others for h in (v, f"{v} lift [95% CI]")]]
    table, classes = [], []
    for cohort, domain, theta in cohorts:
        base = index[(cohort, domain, theta, baseline)]
        if base["n"] == 0:
            continue  # e.g. a domain without power users at this θ (kept in comparison.parquet)
        if cohort == "overall":
            label = "overall"
        elif cohort == "domain":
            label = f"{domain}{' (sparse)' if base['sparse'] else ''}"
        else:
            label = f"power users θ={theta_name(theta)}: {domain}"
        cells = [label, str(base["n"]), format_value(base["value"])]
        marks = []
        for variant in others:
            r = index[(cohort, domain, theta, variant)]
            cells += [format_value(r["value"]), f"{_direction(r)} {_lift_text(r)}".strip()]
            marks.append(_direction(r))
        table.append(cells)
        classes.append(
            "gain" if "▲" in marks and "▼" not in marks else "loss" if "▼" in marks else ""
        )
    return header, table, classes


# --------------------------------------------------------------------------- charts


def chart_domains(runs: list[Variant], stats: DomainStats, metric: str, bootstrap: int, seed: int):
    """Grouped bars: ``metric`` per domain (sparsest → densest) per variant, with 95% CIs."""
    plt = pyplot()

    domains = stats.domains
    base = runs[0].per_user
    masks = {
        key["domain"]: mask for key, mask in cohort_masks(base, stats) if key["cohort"] == "domain"
    }
    domains = [d for d in domains if masks[d].any()]
    fig, ax = new_figure(max(8.0, 0.6 * len(domains) * max(1, len(runs)) / 2), 4.5)
    width = 0.8 / len(runs)
    x = np.arange(len(domains))
    colors = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        per_user = run.values(metric)
        means, lows, highs = [], [], []
        for domain in domains:
            values = per_user[masks[domain]]
            ci = bootstrap_ci(values, bootstrap, stable_seed(seed, "domain:" + domain))
            means.append(values.mean())
            lows.append(values.mean() - ci[0] if bootstrap else 0.0)
            highs.append(ci[1] - values.mean() if bootstrap else 0.0)
        ax.bar(
            x + (i - (len(runs) - 1) / 2) * width,
            means,
            width,
            yerr=[lows, highs],
            capsize=2,
            label=run.name,
            color=colors(i % 10),
            error_kw={"elinewidth": 0.8},
        )
    sparse = set(stats.sparse_domains())
    labels = [f"{d}{'*' if d in sparse else ''}\n(n={int(masks[d].sum())})" for d in domains]
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("target domain (test users)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{metric} by target domain, sparsest → densest (* = sparse), 95% bootstrap CI")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return figure_to_svg(fig)


def chart_training(variants: list[Variant]) -> str | None:
    """Train loss and validation NDCG@10 per epoch, one line per run (colour per variant)."""
    runs = [
        (v.name if len(v.runs) == 1 else f"{v.name} #{i + 1}", run, color)
        for color, v in enumerate(variants)
        for i, run in enumerate(v.runs)
    ]
    if not any(run.train_log for _, run, _ in runs):
        return None
    plt = pyplot()

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = plt.get_cmap("tab10")
    for label, run, color in runs:
        style = {"marker": ".", "label": label, "color": colors(color % 10)}
        epochs = [r.get("epoch") for r in run.train_log]
        ax_loss.plot(epochs, [r.get("train_loss") for r in run.train_log], **style)
        ax_val.plot(epochs, [r.get("val_ndcg@10") for r in run.train_log], **style)
    ax_loss.set(xlabel="epoch", ylabel="train loss (weighted)", title="training loss")
    ax_val.set(
        xlabel="epoch", ylabel="validation NDCG@10", title="validation NDCG@10 (full ranking)"
    )
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.legend()
    return figure_to_svg(fig)


def _varies(history: list[dict]) -> bool:
    values = [tuple(sorted(h.get("weights", {}).items())) for h in history]
    return len(set(values)) > 1


def chart_weights(variants: list[Variant], stats: DomainStats) -> str | None:
    """Each weighted variant's per-domain weights over training (colour: sparse → dense).

    For a variant with several runs, the first run's trajectory is drawn.
    """
    weighted = [
        EvalRun(v.name, v.runs[0].path, {}, v.per_user, [], v.runs[0].weights_history)
        for v in variants
        if _varies(v.runs[0].weights_history)
    ]
    if not weighted:
        return None
    plt = pyplot()

    fig, axes = plt.subplots(
        1, len(weighted), figsize=(5.5 * len(weighted), 4.0), squeeze=False, sharey=True
    )
    cmap = plt.get_cmap("viridis")
    order = stats.domains
    for ax, run in zip(axes[0], weighted, strict=True):
        steps = [h.get("epoch", i) for i, h in enumerate(run.weights_history)]
        for j, domain in enumerate(order):
            values = [h.get("weights", {}).get(domain, np.nan) for h in run.weights_history]
            label = domain if j < 3 or j >= len(order) - 3 else None
            ax.plot(steps, values, color=cmap(j / max(len(order) - 1, 1)), label=label, lw=1.2)
        ax.set(xlabel="epoch", title=f"{run.name}: domain weights")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="sparsest / densest", title_fontsize=7)
    axes[0][0].set_ylabel("loss weight w_d")
    return figure_to_svg(fig)


# --------------------------------------------------------------------------- documents


def _describe_runs(variants: list[Variant]) -> list[list[str]]:
    rows = []
    for run in (run for v in variants for run in v.runs):
        model = run.metrics.get("model", {})
        rows.append(
            [
                run.name,
                run.scheme,
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


MODEL_SETTINGS = ("max_len", "d_model", "n_blocks", "n_heads", "dropout")


def _settings(values: dict, names) -> str:
    """``name=value`` pairs of a run's settings (all of ``values`` when ``names`` is None)."""
    names = names or list(values)
    return ", ".join(f"{n}={values[n]}" for n in names if values.get(n) is not None) or "?"


RUN_HEADER = [
    "variant",
    "scheme",
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


# --------------------------------------------------------------------------- entry


def report(
    evals: dict[str, str | list[str]],
    output_dir: str,
    baseline: str = "none",
    bootstrap: int = 1000,
    seed: int = 0,
    k: int = 10,
    min_users: int = MIN_USERS,
    *,
    overwrite: bool = False,
) -> dict:
    """Compare eval dirs ``{variant name: dir(s)}`` against ``baseline``; write the report dir.

    ``output_dir`` may replace only a previous report output unless ``overwrite``, and never one
    of the eval dirs (checked before anything is read; components.io).

    Several dirs for one name (a list or "d1,d2") are runs of that variant (e.g. seeds): each
    user's metric is averaged over them before the paired bootstrap.
    """
    if not evals:
        raise ConfigError("--eval: give at least one NAME=DIR")
    if baseline not in evals:
        raise ConfigError(f"--baseline {baseline!r} is not one of the --eval names {list(evals)}")
    if bootstrap < 0:
        raise ConfigError(f"--bootstrap: must be >= 0, got {bootstrap}")
    if k < 1:
        raise ConfigError(f"--k: must be >= 1, got {k}")
    if min_users < 1:
        raise ConfigError(f"--min-users: must be >= 1, got {min_users}")
    names = [baseline, *[n for n in evals if n != baseline]]
    inputs = [path for name in names for path in variant_dirs(evals[name])]
    output = {"step": "report", "inputs": inputs, "overwrite": overwrite}
    check_output(output_dir, **output)
    runs = [load_variant(name, evals[name]) for name in names]
    check_comparable([run for variant in runs for run in variant.runs])
    base = runs[0]
    domain_info = base.metrics.get("domains", [])
    stats = DomainStats(
        domains=[d["domain"] for d in domain_info],
        shares={d["domain"]: d.get("p_d") or 0.0 for d in domain_info},
        power_thresholds=[float(t) for t in base.metrics.get("power_thresholds", [])],
        power_users=pa.table({}),
        unlabelled=[d["domain"] for d in domain_info if d.get("unlabelled")],
    )
    metrics = [f"ndcg@{k}", f"recall@{k}"]
    rows = comparison_rows(runs, base, stats, metrics, bootstrap, seed, min_users)
    sentences = [
        summary_sentence(rows, run.name, baseline, metric) for run in runs[1:] for metric in metrics
    ]
    context = {
        "baseline": baseline,
        "runs": _describe_runs(runs),
        "intro": (
            f"{base.per_user.num_rows} test users, full ranking over "
            f"{base.metrics.get('n_items')} items, seen items "
            f"{'excluded' if base.metrics.get('exclude_seen') else 'kept'}; paired bootstrap over "
            f"users ({bootstrap} resamples, seed {seed})"
            + (
                "; a variant with several eval dirs (seeds) is scored by each user's metric "
                "averaged over its runs"
                if any(len(v.runs) > 1 for v in runs)
                else ""
            )
            + ". Sparse domains: "
            f"{', '.join(stats.sparse_domains()) or 'none'}."
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
        "domains": chart_domains(runs, stats, metrics[0], bootstrap, seed),
        "training": chart_training(runs),
        "weights": chart_weights(runs, stats),
    }
    summary = {
        "output_dir": str(output_dir),
        "baseline": baseline,
        "variants": names,
        "n_users": base.per_user.num_rows,
        "findings": sentences,
        "significant": {
            run.name: {
                m: {
                    "sparse_gains": sum(
                        1
                        for r in rows
                        if r["variant"] == run.name
                        and r["metric"] == m
                        and r["cohort"] == "domain"
                        and r["sparse"]
                        and r["significant"]
                        and r["delta"] > 0
                    ),
                    "overall_lift": next(
                        r["lift"]
                        for r in rows
                        if r["variant"] == run.name
                        and r["metric"] == m
                        and r["cohort"] == "overall"
                    ),
                }
                for m in metrics
            }
            for run in runs[1:]
        },
    }
    with atomic_dir(output_dir, **output) as staging:
        write_parquet_atomic(
            pa.Table.from_pylist(rows, schema=COMPARISON_SCHEMA), staging / COMPARISON_FILE
        )
        write_text_atomic(staging / REPORT_MD, markdown_report(context))
        write_text_atomic(staging / REPORT_HTML, html_report(context, charts))
        write_json_atomic(staging / SUMMARY_FILE, _json_safe(summary))
    log.info("report of %s vs %s → %s", names[1:], baseline, output_dir)
    return summary


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and np.isnan(obj):
        return None
    return obj
