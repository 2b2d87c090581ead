"""The report states what each variant was trained with, the spread over its seeds, and the τ
curve of post-hoc logit adjustment (hand-made metrics.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from report_fixtures import base_ranks, model_summary, ndcg10, synthetic_population, write_eval

from components.report.report import report

TAU_CURVE = [
    {
        "tau": tau,
        "val_ndcg@10": 0.10 - 0.02 * (tau - 0.4) ** 2,
        "val_sparse_ndcg@10": 0.05 + 0.01 * tau,
        "test_ndcg@10": 0.09 - 0.02 * (tau - 0.4) ** 2,
        "test_sparse_ndcg@10": 0.04 + 0.01 * tau,
    }
    for tau in (0.0, 0.25, 0.5, 0.75, 1.0)
]


@pytest.fixture(scope="module")
def settings_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    population = synthetic_population(6, 600)
    base = base_ranks(population)
    rng = np.random.default_rng(5)
    seeds = {s: np.maximum(base + rng.integers(-3, 4, size=len(base)), 0) for s in range(3)}
    dynamic = {
        "scheme": "dynamic",
        "loss": "sampled",
        "weighting": {"target": "composite", "beta": 0.8, "lambdas": [0.5, 0.3, 0.2]},
    }
    evals = {
        "none": write_eval(root / "none", population, base),
        "dyn": ",".join(
            write_eval(
                root / f"dyn{s}",
                population,
                seeds[s],
                model_summary(**dynamic, epochs_run=4 + s, train={"seed": s}),
            )
            for s in range(3)
        ),
        "la": write_eval(
            root / "la", population, base, logit_adjust={"tau": 0.5, "curve": TAU_CURVE}
        ),
        "dro": write_eval(
            root / "dro",
            population,
            base,
            model_summary(
                scheme="dro", weighting={"eta": 0.1, "beta": 0.9}, train={"aux_domain": 0.3}
            ),
            extra={"logit_adjust": None},  # evaluated without the adjustment: recorded as null
        ),
    }
    summary = report(evals, root / "rep", bootstrap=100)
    return root / "rep", summary, seeds


def settings_rows(md: str) -> dict[str, dict[str, str]]:
    """The settings table of report.md: {variant: {column: cell}}."""
    lines = md.splitlines()
    start = lines.index("## Settings of each variant")
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("| "))
    table = []
    for line in lines[first:]:
        if not line.startswith("| "):
            break
        table.append([c.strip() for c in line.strip("|").split(" | ")])
    return {cells[0]: dict(zip(table[0], cells, strict=True)) for cells in table[2:]}


def test_settings_table_states_each_variants_training(settings_report):
    out, summary, seeds = settings_report
    rows = settings_rows((out / "report.md").read_text())
    dyn = rows["dyn"]
    assert (dyn["runs"], dyn["seeds"], dyn["loss"], dyn["scheme"]) == (
        "3",
        "0, 1, 2",
        "sampled",
        "dynamic",
    )
    assert (dyn["target"], dyn["β"], dyn["λ"], dyn["τ"]) == (
        "composite",
        "0.8",
        "(0.5, 0.3, 0.2)",
        "-",
    )
    assert dyn["d_model × blocks × heads"] == "64 × 2 × 2" and dyn["max_len"] == "50"
    assert dyn["epochs run"] == "4 / 5 / 6"  # the runs differ: every value shown
    assert (rows["none"]["target"], rows["none"]["β"], rows["none"]["λ"]) == ("-", "-", "-")
    assert rows["la"]["τ"] == "0.5" and rows["la"]["other"] == "-"
    assert rows["dro"]["other"] == "aux λ=0.3, η=0.1"  # the other methods' knobs
    assert (rows["dro"]["target"], rows["dro"]["β"], rows["dro"]["τ"]) == ("-", "0.9", "-")
    # the seed spread: sd (ddof 1) and min–max of each seed's overall NDCG@10
    per_seed = [ndcg10(seeds[s]).mean() for s in range(3)]
    assert dyn["sd over seeds"] == f"{np.std(per_seed, ddof=1):.4f}"
    assert dyn["seed min–max"] == f"{min(per_seed):.4f}–{max(per_seed):.4f}"
    pooled = np.mean([ndcg10(seeds[s]) for s in range(3)], axis=0).mean()
    assert dyn["ndcg@10 [95% CI]"].startswith(f"{pooled:.4f} [")
    assert rows["none"]["sd over seeds"] == "–"
    saved = json.loads((out / "summary.json").read_text())["settings"]["dyn"]
    assert saved["seeds"] == [0, 1, 2]
    np.testing.assert_allclose(saved["seed_spread"]["per_run"], per_seed, rtol=1e-12)
    assert saved["seed_spread"]["sd"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-12)
    low, high = saved["value_ci"]
    assert saved["value"] == pytest.approx(pooled, rel=1e-12) and low <= pooled <= high
    assert saved["runs"][2]["lambdas"] == [0.5, 0.3, 0.2] and saved["runs"][2]["epochs_run"] == 6


def test_tau_curve_is_drawn_when_an_evaluation_has_one(settings_report):
    out, *_ = settings_report
    html = (out / "report.html").read_text()
    section = html[html.index("Post-hoc logit adjustment: the τ curve") :]
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert "la: logit adjustment" in svg and "chosen τ = 0.5" in svg
    assert "test overall (for the record)" in svg and "validation sparse mean" in svg
    assert html.count("<svg") == 3  # frontier, domain bars, τ curve
