"""The report's words: the summary sentence of each variant and the lift tables (cohorts down,
variants across) that report.md and report.html both show."""

from __future__ import annotations

import numpy as np

from components.core.cohorts import theta_name
from components.core.reporting import format_value
from components.report.domains_view import GROUP, DomainView, all_zero


def _pct(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value * 100:+.1f}%"


def _lift_text(row: dict) -> str:
    """'+12.3% [+1.0%, +25.0%]' (or the absolute delta when the baseline is 0)."""
    if row["n"] == 0:
        return "–"
    if row["delta"] == row["delta_low"] == row["delta_high"] == 0:
        return "±0 [±0, ±0]"  # e.g. a variant that ranks these users as the baseline does
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


LISTED = 6  # domains named per list in a summary sentence


def summary_sentence(rows: list[dict], variant: str, baseline: str, metric: str) -> str:
    """How the variant moved ``metric`` in sparse domains, dense domains and overall."""
    mine = [r for r in rows if r["variant"] == variant and r["metric"] == metric]
    domains = [r for r in mine if r["cohort"] == "domain" and r["n"] > 0]
    overall = next(r for r in mine if r["cohort"] == "overall")

    def change(r: dict) -> str:
        # a lift is undefined when the baseline scored 0: give the absolute change instead
        return _pct(r["lift"]) if not np.isnan(r["lift"]) else f"{r['delta']:+.4f} from 0"

    def listing(group: list[dict]) -> str:
        # hundreds of domains: name the largest changes, count the rest
        top = sorted(group, key=lambda r: -abs(r["delta"]))[:LISTED]
        more = f", and {len(group) - len(top)} more" if len(group) > len(top) else ""
        return ", ".join(f"{r['domain']} {change(r)}" for r in top) + more

    def part(group: list[dict], label: str) -> str:
        gains = [r for r in group if r["significant"] and r["delta"] > 0]
        losses = [r for r in group if r["significant"] and r["delta"] < 0]
        gains_text, losses_text = listing(gains), listing(losses)
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


def verdict_line(name: str, point: dict, baseline: str, metric: str) -> str:
    """'dynamic: trades dense for sparse (overall −2.8% [−4.3%, −1.2%]; sparse mean …)'."""

    def stat(label: str, s: dict) -> str:
        if s.get("n_domains") == 0:
            return f"{label}: no such domain with test users"
        low, high = s["lift_ci"]
        ci = f" [{_pct(low)}, {_pct(high)}]" if np.isfinite(low) else ""
        mark = ("▲" if s["delta"] > 0 else "▼") if s["significant"] else ""
        return f"{label} {mark}{_pct(s['lift'])}{ci}"

    return (
        f"{name}: {point['verdict']} ({metric} vs {baseline}: "
        + "; ".join(
            stat(label, point[side])
            for side, label in (
                ("overall", "overall"),
                ("sparse", f"sparse mean of {point['sparse']['n_domains']}"),
                ("dense", f"dense mean of {point['dense']['n_domains']}"),
            )
        )
        + ")"
    )


def _label(cohort: str, domain: str | None, theta, sparse: bool | None) -> str:
    if cohort == "overall":
        return "overall"
    if cohort == "domain":
        return f"{domain}{' (sparse)' if sparse else ''}"
    if cohort == GROUP:
        return str(domain)
    return f"power users θ={theta_name(theta)}: {domain}"


def lift_table(rows: list[dict], variants: list[str], baseline: str, metric: str, view: DomainView):
    """(header, rows, row classes) for one metric: cohorts down (overall, the ``view``'s
    domains and pooled cohorts, the shown domains' power users), variants across. Rows with
    no users, or where every variant scores exactly 0, are left out."""
    index = {}
    for r in rows:
        if r["metric"] == metric:
            index[(r["cohort"], r["domain"], r["theta"], r["variant"])] = r
    thetas = sorted({r["theta"] for r in rows if r["cohort"] == "power"})
    cohorts = [
        ("overall", None, None),
        *((cohort, domain, None) for cohort, domain in view.display()),
        *(("power", d, t) for t in thetas for d in view.shown),
    ]
    others = [v for v in variants if v != baseline]
    header = ["cohort", "n", baseline, *[h for v in others for h in (v, f"{v} lift [95% CI]")]]
    table, classes = [], []
    for cohort, domain, theta in cohorts:
        base = index.get((cohort, domain, theta, baseline))
        if base is None or base["n"] == 0:
            continue  # e.g. a domain without power users at this θ (kept in comparison.parquet)
        mine = [index[(cohort, domain, theta, v)] for v in variants]
        if all_zero(mine):
            continue
        cells = [
            _label(cohort, domain, theta, base["sparse"]),
            str(base["n"]),
            format_value(base["value"]),
        ]
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
