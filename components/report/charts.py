"""The report's charts (inline SVG): per-domain bars with CIs, training curves, weight
trajectories. matplotlib is imported when a chart is drawn (``core.reporting.pyplot``)."""

from __future__ import annotations

import numpy as np

from components.core.bootstrap import bootstrap_ci, stable_seed
from components.core.cohorts import Domains, cohort_masks
from components.core.reporting import figure_to_svg, new_figure, pyplot
from components.report.compare import Variant
from components.report.domains_view import OTHER_SPARSE, DomainView, group_cohorts


def domain_groups(
    per_user, domains: Domains, view: DomainView
) -> list[tuple[str, np.ndarray, bool]]:
    """(seed name, mask, sparse) of the bar chart's groups in display order (``DomainView``)."""
    masks = {
        key["domain"]: mask
        for key, mask in cohort_masks(per_user, domains)
        if key["cohort"] == "domain"
    }
    pooled = {key["domain"]: mask for key, mask in group_cohorts(masks, view)}
    sparse = set(domains.sparse_domains())
    return [
        (f"domain:{name}", masks[name], name in sparse)
        if cohort == "domain"
        else (f"group:{name}", pooled[name], name == OTHER_SPARSE)
        for cohort, name in view.display()
    ]


def chart_domains(
    runs: list[Variant],
    groups: list[tuple[str, np.ndarray, bool]],
    metric: str,
    bootstrap: int,
    seed: int,
):
    """Grouped bars: ``metric`` per group (``domain_groups``: sparsest → densest, the pooled
    "other" cohorts between the sides) per variant, with 95% CIs; groups where every variant
    scores exactly 0 are left out."""
    plt = pyplot()

    values = {run.name: run.values(metric) for run in runs}
    shown = [g for g in groups if any(values[r.name][g[1]].any() for r in runs)]
    fig, ax = new_figure(max(8.0, 0.6 * len(shown) * max(1, len(runs)) / 2), 4.5)
    width = 0.8 / len(runs)
    x = np.arange(len(shown))
    colors = plt.get_cmap("tab10")
    for i, run in enumerate(runs):
        means, lows, highs = [], [], []
        for name, mask, _ in shown:
            group = values[run.name][mask]
            ci = bootstrap_ci(group, bootstrap, stable_seed(seed, name))
            means.append(group.mean())
            lows.append(group.mean() - ci[0] if bootstrap else 0.0)
            highs.append(ci[1] - group.mean() if bootstrap else 0.0)
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
    labels = [
        f"{name.partition(':')[2]}{'*' if sparse else ''}\n(n={int(mask.sum())})"
        for name, mask, sparse in shown
    ]
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


def chart_weights(variants: list[Variant], domains: Domains) -> str | None:
    """Each weighted variant's per-domain weights over training (colour: sparse → dense).

    For a variant with several runs, the first run's trajectory is drawn.
    """
    weighted = [
        (v.name, v.runs[0].weights_history) for v in variants if _varies(v.runs[0].weights_history)
    ]
    if not weighted:
        return None
    plt = pyplot()

    fig, axes = plt.subplots(
        1, len(weighted), figsize=(5.5 * len(weighted), 4.0), squeeze=False, sharey=True
    )
    cmap = plt.get_cmap("viridis")
    order = domains.domains
    for ax, (name, history) in zip(axes[0], weighted, strict=True):
        steps = [h.get("epoch", i) for i, h in enumerate(history)]
        for j, domain in enumerate(order):
            values = [h.get("weights", {}).get(domain, np.nan) for h in history]
            label = domain if j < 3 or j >= len(order) - 3 else None
            ax.plot(steps, values, color=cmap(j / max(len(order) - 1, 1)), label=label, lw=1.2)
        ax.set(xlabel="epoch", title=f"{name}: domain weights")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="sparsest / densest", title_fontsize=7)
    axes[0][0].set_ylabel("loss weight w_d")
    return figure_to_svg(fig)
