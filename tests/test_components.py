"""Each KFP component run through kfp.local's SubprocessRunner on a tiny synthetic dataset.

The chain ingest → stats → train → evaluate runs once per module (kfp.local executes every
task in a fresh Python process, like a container would); each test checks one step's artifacts.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kfp import local

from components.evaluate import component as evaluate_component
from components.ingest import component as ingest_component
from components.schema import load_dataset
from components.stats import component as stats_component
from components.train import component as train_component
from tests.kfp_helpers import TINY_EPOCHS, TINY_EVAL, TINY_INGEST, TINY_TRAIN


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp-local")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    return root


@pytest.fixture(scope="module")
def ingest_task(local_root):
    return ingest_component.component()(source="synthetic", input_uri="", options=TINY_INGEST)


@pytest.fixture(scope="module")
def stats_task(ingest_task):
    return stats_component.component()(dataset=ingest_task.outputs["dataset"], fixed_domains=[],
                                       options={})


@pytest.fixture(scope="module")
def train_task(ingest_task, stats_task):
    return train_component.component()(
        dataset=ingest_task.outputs["dataset"], stats=stats_task.outputs["domain_stats"],
        variant="dynamic", loss="ce", epochs=TINY_EPOCHS, options=TINY_TRAIN)


@pytest.fixture(scope="module")
def evaluate_task(ingest_task, stats_task, train_task):
    return evaluate_component.component()(
        dataset=ingest_task.outputs["dataset"], stats=stats_task.outputs["domain_stats"],
        model=train_task.outputs["model"], variant="dynamic", options=TINY_EVAL)


def test_ingest_writes_the_dataset_contract(ingest_task):
    artifact = ingest_task.outputs["dataset"]
    dataset = load_dataset(artifact.path)  # validates schemas and the manifest
    assert dataset.n_users > 0 and dataset.n_items > 0
    assert artifact.metadata["source"] == "synthetic"
    assert artifact.metadata["users"] == dataset.n_users
    assert artifact.metadata["interactions"] == dataset.interactions.num_rows
    assert dataset.manifest["options"]["num_users"] == TINY_INGEST["num_users"]


def test_ingest_bad_option_fails_the_task_without_output(local_root):
    with pytest.raises(RuntimeError, match="FAILURE"):
        ingest_component.component()(source="synthetic", input_uri="",
                                     options={"num_users": 10, "no_such_option": 1})


def test_stats_writes_weights_and_html_summary(stats_task, ingest_task):
    stats_dir = Path(stats_task.outputs["domain_stats"].path)
    weights = json.loads((stats_dir / "weights.json").read_text())
    domains = load_dataset(ingest_task.outputs["dataset"].path).domain_names()
    assert sorted(weights["domains"]) == domains
    assert set(pq.read_table(stats_dir / "domain_stats.parquet").column("domain").to_pylist()) \
        == set(domains)
    summary = Path(stats_task.outputs["summary"].path)
    assert summary.read_bytes() == (stats_dir / "report.html").read_bytes()


def test_train_writes_model_artifact(train_task):
    model = train_task.outputs["model"]
    model_dir = Path(model.path)
    config = json.loads((model_dir / "config.json").read_text())
    assert (model_dir / "model.pt").stat().st_size > 0
    assert config["scheme"] == "dynamic" and config["loss"] == "ce"
    assert config["model"]["d_model"] == TINY_TRAIN["d_model"]
    assert model.metadata["variant"] == "dynamic"
    log_lines = (model_dir / "train_log.jsonl").read_text().splitlines()
    assert 1 <= len(log_lines) <= TINY_EPOCHS


def test_evaluate_logs_overall_metrics_and_writes_details(evaluate_task):
    evaluation = evaluate_task.outputs["evaluation"]
    result = json.loads((Path(evaluation.path) / "metrics.json").read_text())
    logged = evaluate_task.outputs["metrics"].metadata
    assert logged["recall_at_10"] == pytest.approx(result["summary"]["recall@10"])
    assert logged["ndcg_at_10"] == pytest.approx(result["summary"]["ndcg@10"])
    assert 0.0 <= logged["ndcg_at_10"] <= logged["recall_at_10"] <= 1.0
    assert evaluation.metadata["variant"] == "dynamic"
    assert (Path(evaluation.path) / "per_user.parquet").exists()
    summary = Path(evaluate_task.outputs["summary"].path).read_text()
    assert summary == (Path(evaluation.path) / "metrics.md").read_text()
