"""The Dataproc Serverless ingest's gs:// output (``dwlrec compile --target vertex --ingest-on
spark``, issue 16) against a GCS emulator on 127.0.0.1: ``spark_main.py`` stages the output locally
and uploads it (refusing a prefix that holds anything but a previous ingest output), the
``ingest-from-gcs`` task downloads and verifies it; the artifact equals a plain ingest's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import Dataset

from components.errors import InputError
from components.ingest import component as ingest_component
from components.ingest.spark_task import dataproc_arguments
from tests.gcs_emulator import gcs_emulator
from tests.test_ingest_spark_pipeline import OPTIONS, plain, tree

__all__ = ["plain"]  # the fixture, shared


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator() as client:
        yield client.create_bucket("pipeline-root")


def _objects(bucket, prefix: str) -> dict[str, bytes]:
    return {
        b.name[len(prefix) + 1 :]: b.download_as_bytes()
        for b in bucket.list_blobs(prefix=prefix + "/")
    }


def _job(source: Path, run_id: str) -> tuple[list[str], str]:
    """The batch's arguments (as the ingest-spark-args task makes them) and its output."""
    return dataproc_arguments("movielens", str(source), OPTIONS, "gs://pipeline-root/v", run_id)


def test_the_job_uploads_its_output_and_the_next_task_reads_it(gcs, tmp_path, capsys, plain):
    from components.ingest import spark_main

    source, expected = plain
    args, uri = _job(source, "run-7")
    assert spark_main.main([*args, "--engine", "arrow"]) == 0, capsys.readouterr().err
    stored = _objects(gcs, "v/run-7/ingest")
    local = tree(expected)
    assert stored == local  # every file, the marker too
    dataset = Dataset(name="dataset", uri=str(tmp_path / "artifact"))
    ingest_component.ingest_from_gcs(output_uri=uri, dataset=dataset)
    assert tree(tmp_path / "artifact") == local
    assert dataset.metadata["source"] == "movielens"
    # a retried batch replaces its previous output (and only that)
    assert spark_main.main([*args, "--engine", "arrow"]) == 0
    assert _objects(gcs, "v/run-7/ingest") == stored


def test_an_interrupted_upload_is_replaced_by_a_retry_and_refused_by_the_reader(
    gcs, tmp_path, plain
):
    from components.ingest import gcs_output, spark_main

    source, expected = plain
    args, uri = _job(source, "run-8")
    marker = {"dwlrec_output": 1, "step": "ingest", "writing": ["items.parquet", "train_view"]}
    gcs.blob("v/run-8/ingest/.dwlrec-output.json").upload_from_string(json.dumps(marker))
    gcs.blob("v/run-8/ingest/train_view/shard-00099.parquet").upload_from_string(b"partial")
    with pytest.raises(InputError, match="says it is incomplete"):
        gcs_output.download_output(uri, tmp_path / "artifact")
    assert spark_main.main([*args, "--engine", "arrow"]) == 0
    assert _objects(gcs, "v/run-8/ingest") == tree(expected)  # the partial object is gone


@pytest.mark.parametrize("where", ["user-data", "v/run-9/ingest"])
def test_a_prefix_holding_other_objects_is_refused_before_any_work(gcs, capsys, plain, where):
    from components.ingest import spark_main

    source, _ = plain
    args, _ = dataproc_arguments("movielens", str(source), OPTIONS, "gs://pipeline-root", "x")
    if where.startswith("v/"):  # a previous output with a user's file beside it
        assert spark_main.main([*_job(source, "run-9")[0], "--engine", "arrow"]) == 0
    gcs.blob(f"{where}/notes.csv").upload_from_string(b"a user's data")
    before = _objects(gcs, where)
    uri = f"gs://pipeline-root/{where}"
    argv = [*args[:-1], uri, "--engine", "arrow"]
    assert spark_main.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --output {uri}:"), err
    assert "notes.csv" in err[0]
    assert _objects(gcs, where) == before  # untouched
    assert spark_main.main([*argv, "--overwrite"]) == 2
    assert "--overwrite" in capsys.readouterr().err
