"""KFP component of the ingest step: a thin wrapper over ``components.ingest.ingest``.

The body runs inside the project image (``base_image``), so it only imports the installed
package; nothing is pip-installed when the task starts.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.kfp_support import cpu_image


def ingest(source: str, input_uri: str, options: dict, dataset: Output[Dataset]):
    """Ingest ``source`` (``input_uri`` for file sources; ``options`` = the CLI's options as a
    dict, e.g. ``{"num_users": 300}``) into the Dataset artifact directory."""
    from components.ingest import ingest as run_ingest
    from components.kfp_support import restore_ints, write_artifact_dir

    def produce(out_dir):
        return run_ingest(
            source=source, input_uri=input_uri or None, output_dir=out_dir, **restore_ints(options)
        )

    manifest = write_artifact_dir(dataset.path, produce)
    dataset.metadata["source"] = source
    dataset.metadata.update({k: int(v) for k, v in manifest["counts"].items()})


def component(image: str | None = None):
    """The ingest component running in ``image`` (default: ``$DWLREC_IMAGE`` or dwlrec:latest)."""
    return dsl.component(ingest, base_image=image or cpu_image(), install_kfp_package=False)


# ---- ``dwlrec compile --ingest-on spark`` (components.ingest.spark_task) ----


def ingest_spark_app(
    source: str,
    input_uri: str,
    options: dict,
    run_id: str,
    spark_app: dict,
    dataset: Output[Dataset],
):
    """Kubeflow: ingest as a Spark Operator SparkApplication writing onto the shared volume
    (``spark_app``: the SparkAppSpec fixed at compile time), then copy its verified output
    into the Dataset artifact. A retry reuses a COMPLETED application's output."""
    from components.ingest.spark_task import ingest_on_operator
    from components.kfp_support import restore_ints

    manifest = ingest_on_operator(
        restore_ints(spark_app), source, input_uri, restore_ints(options), run_id, dataset.path
    )
    dataset.metadata["source"] = source
    dataset.metadata.update({k: int(v) for k, v in manifest["counts"].items()})


def ingest_spark_args(
    source: str, input_uri: str, options: dict, pipeline_root: str, run_id: str
) -> NamedTuple("Outputs", [("args", list), ("output_uri", str)]):  # type: ignore[valid-type]  # noqa: UP014
    """Vertex: the Dataproc Serverless batch's arguments (the ingest CLI's, checked now) and
    its output, gs://<pipeline root>/<run id>/ingest."""
    from components.ingest.spark_task import dataproc_arguments
    from components.kfp_support import restore_ints

    args, output_uri = dataproc_arguments(
        source, input_uri, restore_ints(options), pipeline_root, run_id
    )
    print("ingest: Dataproc batch arguments:", " ".join(args))
    return args, output_uri  # kfp reads a NamedTuple output by position


def ingest_from_gcs(output_uri: str, dataset: Output[Dataset]):
    """Vertex: the Dataproc batch's verified output (``output_uri``) as the Dataset artifact."""
    from components.ingest.gcs_output import download_output

    manifest = download_output(output_uri, dataset.path)
    dataset.metadata["source"] = manifest["source"]
    dataset.metadata.update({k: int(v) for k, v in manifest["counts"].items()})


def spark_component(function, image: str | None = None):
    """One of the Spark ingest's light tasks (above) running in ``image``."""
    return dsl.component(function, base_image=image or cpu_image(), install_kfp_package=False)
