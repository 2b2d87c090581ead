"""The frontier chart (overall lift vs mean sparse / dense lift per variant) and the τ curve of
post-hoc logit adjustment. matplotlib is imported when a chart is drawn."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from components.core.reporting import figure_bytes, figure_to_svg, pyplot

FRONTIER_CAPTION = (
    "x: overall {metric} lift over {baseline}; y: lift of the mean {metric} over the {sides} "
    "(every domain with test users weighs the same: the relative lift of the macro mean, "
    "M_variant / M_baseline − 1). Whiskers: paired bootstrap 95% CIs (users resampled "
    "jointly). Stars: Pareto-optimal among the variants and {baseline} at (0, 0), maximising "
    "both axes (point estimates); hollow circles: dominated."
)


def _err(stat: dict) -> list[list[float]]:
    """Whisker lengths below/above the point (0 where the CI is undefined)."""
    low, high = stat["lift_ci"]
    lift = stat["lift"]
    below = lift - low if np.isfinite(low) else 0.0
    above = high - lift if np.isfinite(high) else 0.0
    return [[max(below, 0.0)], [max(above, 0.0)]]


def chart_frontier(points: Mapping[str, dict], baseline: str, metric: str):
    """(svg element, png bytes) of the two-panel frontier, or None without variants."""
    if not points:
        return None
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8), sharex=True)
    colors = plt.get_cmap("tab10")
    for ax, side in zip(axes, ("sparse", "dense"), strict=True):
        ax.axhline(0, color="#888", lw=0.8)
        ax.axvline(0, color="#888", lw=0.8)
        ax.plot([0], [0], "X", color="black", ms=9)
        ax.annotate(baseline, (0, 0), xytext=(5, -12), textcoords="offset points", fontsize=8)
        for i, (name, point) in enumerate(points.items()):
            x, y = point["overall"]["lift"], point[side]["lift"]
            if not (np.isfinite(x) and np.isfinite(y)):
                continue  # a zero baseline: no relative lift to place
            best = point[f"pareto_{side}"]
            color = colors(i % 10)
            ax.errorbar(
                [x], [y], xerr=_err(point["overall"]), yerr=_err(point[side]),
                fmt="*" if best else "o", ms=13 if best else 7, color=color,
                mfc=color if best else "white", capsize=3, elinewidth=1, label=name,
            )  # fmt: skip
            ax.annotate(
                f"{name}{' (Pareto)' if best else ''}", (x, y), xytext=(6, 6),
                textcoords="offset points", fontsize=8, color=color,
            )  # fmt: skip
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=7))
            axis.set_major_formatter(PercentFormatter(1.0, decimals=None))
        ax.set_xlabel(f"overall {metric} lift vs {baseline}")
        ax.set_ylabel(f"mean {metric} lift over the {side} domains")
        ax.set_title(f"overall vs {side} domains")
        ax.margins(x=0.15, y=0.12)  # room for the labels beside the outermost points
        ax.grid(alpha=0.3)
    fig.subplots_adjust(wspace=0.32)
    png = figure_bytes(fig, "png", dpi=110)
    return figure_to_svg(fig), png


def tau_runs(variants) -> list[tuple[str, dict]]:
    """(label, metrics.json ``logit_adjust``) of every run that carries a τ curve."""
    out = []
    for variant in variants:
        for i, run in enumerate(variant.runs):
            adjust = run.metrics.get("logit_adjust")
            if isinstance(adjust, dict) and adjust.get("curve"):
                label = variant.name if len(variant.runs) == 1 else f"{variant.name} #{i + 1}"
                out.append((label, adjust))
    return out


def _curve_metric(curve: list[dict]) -> str:
    """The metric a τ curve was recorded with: ``ndcg@10`` from its ``val_ndcg@10`` key."""
    keys = [k for p in curve for k in p if k.startswith("val_") and "sparse" not in k]
    return keys[0].removeprefix("val_") if keys else "ndcg@10"


def chart_tau(variants, max_panels: int = 6) -> str | None:
    """Validation overall and sparse-mean NDCG against τ per logit-adjusted run (solid), the
    test curve dashed (for the record, never used to choose), the chosen τ marked."""
    runs = tau_runs(variants)[:max_panels]
    if not runs:
        return None
    metric = _curve_metric(runs[0][1]["curve"])
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(runs), figsize=(5.0 * len(runs), 3.8), squeeze=False, sharey=True
    )
    lines = (
        (f"val_{metric}", "C0", "-", "validation overall"),
        (f"val_sparse_{metric}", "C1", "-", "validation sparse mean"),
        (f"test_{metric}", "C0", "--", "test overall (for the record)"),
        (f"test_sparse_{metric}", "C1", "--", "test sparse mean (for the record)"),
    )
    for ax, (label, adjust) in zip(axes[0], runs, strict=True):
        curve = sorted(adjust["curve"], key=lambda p: p.get("tau", 0.0))
        taus = [p.get("tau") for p in curve]
        for key, color, style, name in lines:
            values = [p.get(key, np.nan) for p in curve]
            if any(v is not None and np.isfinite(v) for v in values):
                values = [np.nan if v is None else v for v in values]
                ax.plot(taus, values, style, color=color, marker=".", label=name)
        tau = adjust.get("tau")
        if tau is not None:
            ax.axvline(tau, color="black", lw=1, ls=":", label=f"chosen τ = {tau:g}")
        ax.set(xlabel="τ", title=f"{label}: logit adjustment")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(metric)
    return figure_to_svg(fig)
