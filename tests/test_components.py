"""Each KFP component run through kfp.local's SubprocessRunner on a tiny synthetic dataset.

The chain ingest → stats → train → evaluate runs once per module as a small pipeline (kfp.local
executes every task in a fresh Python process, as a container would); each test checks one
step's artifacts. The report component (fan-in of several variants) is exercised by the whole
pipeline in tests/test_pipeline.py.
"""

import json
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq
import pytest
from kfp import dsl, local
from kfp.dsl import HTML, Dataset, Markdown, Metrics, Model

from components.evaluate import component as evaluate_component
from components.ingest import component as ingest_component
from components.schema import load_dataset
from components.stats import component as stats_component
from components.train import component as train_component
from tests.kfp_helpers import TINY_EPOCHS, TINY_EVAL, TINY_INGEST, TINY_TRAIN

pytestmark = pytest.mark.filterwarnings(
    "ignore:You may be attemping to run a task that uses custom:RuntimeWarning"
)


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp-local")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    return root


class ChainOutputs(NamedTuple):
    dataset: Dataset
    domain_stats: Dataset
    stats_summary: HTML
    model: Model
    metrics: Metrics
    eval_summary: Markdown
    evaluation: Dataset


@dsl.pipeline(name="component-chain")
def component_chain() -> ChainOutputs:
    """ingest → stats → train → evaluate for one variant (kfp.local runs a lone component only
    when it has no input artifacts, so the chain is a small pipeline returning every artifact)."""
    ingest = ingest_component.component()(source="synthetic", input_uri="", options=TINY_INGEST)
    stats = stats_component.component()(
        dataset=ingest.outputs["dataset"], fixed_domains=[], options={}, variants=["dynamic"]
    )
    train = train_component.component()(
        dataset=ingest.outputs["dataset"],
        stats=stats.outputs["domain_stats"],
        variant={"name": "dynamic", "scheme": "dynamic"},
        loss="ce",
        epochs=TINY_EPOCHS,
        exclude_seen=False,
        options=TINY_TRAIN,
        device="cpu",
        nproc=1,
        checkpoint_root="",
        run_id="component-chain",
    )
    evaluate = evaluate_component.component()(
        dataset=ingest.outputs["dataset"],
        stats=stats.outputs["domain_stats"],
        model=train.outputs["model"],
        variant={"name": "dynamic", "scheme": "dynamic"},
        exclude_seen=False,
        options=TINY_EVAL,
        device="cpu",
    )
    return ChainOutputs(
        dataset=ingest.outputs["dataset"],
        domain_stats=stats.outputs["domain_stats"],
        stats_summary=stats.outputs["summary"],
        model=train.outputs["model"],
        metrics=evaluate.outputs["metrics"],
        eval_summary=evaluate.outputs["summary"],
        evaluation=evaluate.outputs["evaluation"],
    )


@pytest.fixture(scope="module")
def chain(local_root):
    return component_chain().outputs


def test_ingest_writes_the_dataset_contract(chain):
    artifact = chain["dataset"]
    dataset = load_dataset(artifact.path)  # validates schemas and the manifest
    assert dataset.n_users > 0 and dataset.n_items > 0
    assert artifact.metadata["source"] == "synthetic"
    assert artifact.metadata["users"] == dataset.n_users
    assert artifact.metadata["interactions"] == dataset.interactions.num_rows
    assert dataset.manifest["options"]["num_users"] == TINY_INGEST["num_users"]


def test_ingest_bad_option_fails_the_task_without_output(tmp_path, capfd):
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    with pytest.raises(RuntimeError, match="FAILURE"):
        ingest_component.component()(
            source="synthetic", input_uri="", options={"num_users": 10, "no_such_option": 1}
        )
    assert "no_such_option" in capfd.readouterr().out  # the step's error names the option
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".parquet"]
    assert leftovers == []


def test_stats_writes_weights_and_html_summary(chain):
    stats_dir = Path(chain["domain_stats"].path)
    weights = json.loads((stats_dir / "weights.json").read_text())
    domains = load_dataset(chain["dataset"].path).domain_names()
    assert sorted(weights["domains"]) == domains
    assert set(
        pq.read_table(stats_dir / "domain_stats.parquet").column("domain").to_pylist()
    ) == set(domains)
    summary = Path(chain["stats_summary"].path)
    assert summary.read_bytes() == (stats_dir / "report.html").read_bytes()


def test_train_writes_model_artifact(chain):
    model = chain["model"]
    model_dir = Path(model.path)
    config = json.loads((model_dir / "config.json").read_text())
    assert (model_dir / "model.pt").stat().st_size > 0
    assert config["scheme"] == "dynamic" and config["loss"] == "ce"
    assert config["model"]["d_model"] == TINY_TRAIN["d_model"]
    assert model.metadata["variant"] == "dynamic"
    log_lines = (model_dir / "train_log.jsonl").read_text().splitlines()
    assert 1 <= len(log_lines) <= TINY_EPOCHS


def test_evaluate_logs_overall_metrics_and_writes_details(chain):
    evaluation = chain["evaluation"]
    result = json.loads((Path(evaluation.path) / "metrics.json").read_text())
    logged = chain["metrics"].metadata
    assert logged["dynamic_recall_at_10"] == pytest.approx(result["summary"]["recall@10"])
    assert logged["dynamic_ndcg_at_10"] == pytest.approx(result["summary"]["ndcg@10"])
    assert 0.0 <= logged["dynamic_ndcg_at_10"] <= logged["dynamic_recall_at_10"] <= 1.0
    assert evaluation.metadata["variant"] == "dynamic"
    assert (Path(evaluation.path) / "per_user.parquet").exists()
    summary = Path(chain["eval_summary"].path).read_text()
    assert summary == (Path(evaluation.path) / "metrics.md").read_text()
