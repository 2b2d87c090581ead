"""The Metrics artifacts of the evaluate and report components, for a UI to compare variants.

The component functions are called directly (plain Python; kfp's artifact classes with local
URIs) on tiny hand-built inputs from eval_fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eval_fixtures import chain_sequences, write_dataset, write_model_dir, write_stats
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Model

from components.errors import ConfigError
from components.evaluate.component import evaluate
from components.kfp_support import ui_metric_key
from components.report.component import report

torch.set_num_threads(1)
N_ITEMS = 40
VARIANTS = ("none", "dynamic")


def run_evaluate(root: Path, dataset: Path, stats: Path, model: Path, variant: str):
    """The evaluate component on local dirs; (metrics, evaluation) artifacts."""
    metrics = Metrics(uri=str(root / f"metrics_{variant}"))
    evaluation = Dataset(uri=str(root / f"eval_{variant}"))
    evaluate(
        dataset=Dataset(uri=str(dataset)),
        stats=Dataset(uri=str(stats)),
        model=Model(uri=str(model)),
        variant={"name": variant, "scheme": variant},
        exclude_seen=False,
        options={"bootstrap": 20.0, "device": "cuda"},  # the device parameter must win
        device="cpu",
        metrics=metrics,
        summary=Markdown(uri=str(root / f"summary_{variant}.md")),
        evaluation=evaluation,
    )
    return metrics, evaluation


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics-artifacts")
    dataset = write_dataset(root / "data", chain_sequences(80, N_ITEMS, 8), N_ITEMS)
    stats = write_stats(root / "stats", dataset)
    runs = {}
    for seed, variant in enumerate(VARIANTS):
        model = write_model_dir(root / f"model_{variant}", dataset, variant, seed)
        runs[variant] = run_evaluate(root, dataset, stats, model, variant)
    return root, runs


def run_report(root: Path, evaluations: list[Dataset], baseline: str = "none") -> Metrics:
    metrics = Metrics(uri=str(root / "report_metrics"))
    report(
        evaluations=evaluations,
        baseline=baseline,
        options={"bootstrap": 20.0},
        report_html=HTML(uri=str(root / "report.html")),
        report_md=Markdown(uri=str(root / "report.md")),
        report_dir=Dataset(uri=str(root / "report_dir")),
        metrics=metrics,
    )
    return metrics


def test_ui_metric_key_carries_the_variant_in_valid_characters():
    assert ui_metric_key("dynamic", "ndcg@10") == "dynamic_ndcg_at_10"
    assert ui_metric_key("my variant/2", "recall@20") == "my_variant_2_recall_at_20"


def test_evaluate_logs_variant_prefixed_metrics_on_the_requested_device(evaluated):
    _, runs = evaluated
    for variant, (metrics, evaluation) in runs.items():
        result = json.loads((Path(evaluation.path) / "metrics.json").read_text())
        assert result["device"] == "cpu"
        assert evaluation.metadata["variant"] == variant
        logged = metrics.metadata
        assert logged[f"{variant}_recall_at_10"] == pytest.approx(result["summary"]["recall@10"])
        assert logged[f"{variant}_ndcg_at_10"] == pytest.approx(result["summary"]["ndcg@10"])
        assert all(key.startswith(f"{variant}_") for key in logged)
        assert all(isinstance(value, float) for value in logged.values())


def test_report_metrics_hold_every_variant_and_the_lift(evaluated):
    root, runs = evaluated
    metrics = run_report(root / "ok", [evaluation for _, evaluation in runs.values()])
    logged = metrics.metadata
    summary = json.loads((root / "ok" / "report_dir" / "summary.json").read_text())
    for variant, (eval_metrics, _) in runs.items():
        for metric in ("recall_at_10", "ndcg_at_10"):
            key = f"{variant}_{metric}"
            assert logged[key] == pytest.approx(eval_metrics.metadata[key])
    for metric in ("recall", "ndcg"):
        lift = summary["significant"]["dynamic"][f"{metric}@10"]["overall_lift"]
        assert logged[f"dynamic_{metric}_at_10_lift"] == pytest.approx(lift)
    assert not any(key.startswith("none_") and key.endswith("_lift") for key in logged)


def test_report_rejects_unnamed_or_duplicate_variants_and_a_missing_baseline(evaluated):
    root, runs = evaluated
    none_eval, dynamic_eval = runs["none"][1], runs["dynamic"][1]
    unnamed = Dataset(uri=dynamic_eval.uri)
    with pytest.raises(ConfigError, match="no 'variant' in its metadata"):
        run_report(root / "unnamed", [none_eval, unnamed])
    twin = Dataset(uri=dynamic_eval.uri, metadata={"variant": "none"})
    with pytest.raises(ConfigError, match="two evaluations of variant 'none'"):
        run_report(root / "twin", [none_eval, twin])
    with pytest.raises(ConfigError, match=r"baseline 'fixed' .*\['dynamic', 'none'\]"):
        run_report(root / "nobase", [none_eval, dynamic_eval], baseline="fixed")
    assert not (root / "unnamed").exists() and not (root / "twin").exists()
