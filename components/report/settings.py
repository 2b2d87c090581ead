"""What each variant was trained with (loss, scheme, target, β, λ, τ, model size, max-len,
epochs, seeds; the auxiliary domain head's λ, DRO's η, dynamic-user's θ where used) and how much its overall metric moves between its seeds: the report's settings
table, one row per variant, from each run's metrics.json (``model``: the evaluate step's
``model_summary`` of the model's config.json; ``logit_adjust.tau`` when post-hoc logit
adjustment chose one)."""

from __future__ import annotations

import numpy as np

from components.core.metrics import metric_values
from components.core.reporting import format_value


def _target(model: dict) -> str | None:
    scheme = model.get("scheme")
    if scheme in (None, "none", "unknown", "fixed", "dro"):
        return None
    return (model.get("weighting") or {}).get("target") or "inverse"


def run_settings(metrics: dict) -> dict:
    """One run's settings (None where a setting does not apply or was not recorded)."""
    model = metrics.get("model") or {}
    weighting = model.get("weighting") or {}
    size = model.get("model") or {}
    adjust = metrics.get("logit_adjust")  # None or absent: no post-hoc adjustment
    train = model.get("train") or {}
    target = _target(model)
    lambdas = weighting.get("lambdas") if target == "composite" else None
    return {
        "loss": model.get("loss"),
        "scheme": model.get("scheme"),
        "target": target,
        "beta": weighting.get("beta"),
        "lambdas": list(lambdas) if lambdas is not None else None,
        "tau": adjust.get("tau") if isinstance(adjust, dict) else None,
        "d_model": size.get("d_model"),
        "n_blocks": size.get("n_blocks"),
        "n_heads": size.get("n_heads"),
        "max_len": size.get("max_len"),
        "epochs_run": model.get("epochs_run"),
        "best_epoch": model.get("best_epoch"),
        "seed": train.get("seed"),
        # the other methods' knobs: the auxiliary domain head's λ, DRO's η, dynamic-user's θ
        "aux_lambda": train.get("aux_domain") or None,
        "eta": weighting.get("eta"),
        "user_theta": weighting.get("user_theta"),
    }


OTHER_SETTINGS = (("aux_lambda", "aux λ"), ("eta", "η"), ("user_theta", "θ_user"))


def _other(run: dict) -> str | None:
    """'aux λ=0.3, η=0.1' from the settings of the other methods that a run used."""
    text = ", ".join(
        f"{label}={format_value(run[key], 'g')}"
        for key, label in OTHER_SETTINGS
        if run.get(key) is not None
    )
    return text or None


def _merged(values: list) -> str:
    """One cell for a setting over a variant's runs: the value, or "a / b" where runs differ."""
    shown = []
    for v in values:
        text = "-" if v is None else format_value(v, "g")
        if isinstance(v, list):
            text = "(" + ", ".join(format_value(x, "g") for x in v) + ")"
        if text not in shown:
            shown.append(text)
    return " / ".join(shown)


def seed_spread(variant, metric: str) -> dict:
    """Each run's overall ``metric`` (mean over users), their sd (ddof 1; None with one run),
    min and max: how much the variant moves between seeds, beside the bootstrap CI."""
    per_run = [
        float(np.mean(metric_values(run.per_user["rank"].to_numpy(), metric)))
        for run in variant.runs
    ]
    return {
        "per_run": per_run,
        "sd": float(np.std(per_run, ddof=1)) if len(per_run) > 1 else None,
        "min": min(per_run),
        "max": max(per_run),
    }


def variant_settings(variants, overall_rows: dict[str, dict], metric: str) -> dict[str, dict]:
    """summary.json ``settings``: per variant, every run's settings, the seeds, the pooled
    overall ``metric`` with its bootstrap CI and the seed spread."""
    out = {}
    for variant in variants:
        runs = [run_settings(run.metrics) for run in variant.runs]
        row = overall_rows[variant.name]
        out[variant.name] = {
            "runs": runs,
            "seeds": [r["seed"] for r in runs],
            "metric": metric,
            "value": row["value"],
            "value_ci": [row["value_low"], row["value_high"]],
            "seed_spread": seed_spread(variant, metric),
        }
    return out


SETTINGS_HEADER = [
    "variant",
    "runs",
    "seeds",
    "loss",
    "scheme",
    "target",
    "β",
    "λ",
    "τ",
    "d_model × blocks × heads",
    "max_len",
    "epochs run",
    "other",
]


def settings_table(settings: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per variant; the metric columns give the pooled value with its
    bootstrap 95% CI, then the sd and min–max over the variant's seeds."""
    metric = next(iter(settings.values()))["metric"] if settings else "metric"
    header = [
        *SETTINGS_HEADER,
        f"{metric} [95% CI]",
        "sd over seeds",
        "seed min–max",
    ]
    rows = []
    for name, s in settings.items():
        runs = s["runs"]

        def col(key: str, runs: list = runs) -> str:
            return _merged([r[key] for r in runs])

        size = _merged(
            [
                None
                if r["d_model"] is None
                else f"{r['d_model']} × {r['n_blocks']} × {r['n_heads']}"
                for r in runs
            ]
        )
        low, high = s["value_ci"]
        spread = s["seed_spread"]
        rows.append(
            [
                name,
                str(len(runs)),
                ", ".join("?" if v is None else str(v) for v in s["seeds"]),
                col("loss"),
                col("scheme"),
                col("target"),
                col("beta"),
                col("lambdas"),
                col("tau"),
                size,
                col("max_len"),
                col("epochs_run"),
                _merged([_other(r) for r in runs]),
                f"{format_value(s['value'])} [{format_value(low)}, {format_value(high)}]",
                format_value(spread["sd"]),
                f"{spread['min']:.4f}–{spread['max']:.4f}" if len(runs) > 1 else "–",
            ]
        )
    return header, rows
