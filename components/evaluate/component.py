"""KFP component of the evaluate step: a thin wrapper over ``components.evaluate.evaluate``."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.kfp_support import cuda_image


def evaluate(
    dataset: Input[Dataset],
    stats: Input[Dataset],
    model: Input[Model],
    variant: str,
    options: dict,
    metrics: Output[Metrics],
    summary: Output[Markdown],
    evaluation: Output[Dataset],
):
    """Full-ranking evaluation of one variant's model, overall and per domain/power-user cohort.

    ``metrics`` carries the overall Recall@10/NDCG@10 (shown in the KFP/Vertex UI); ``evaluation``
    is the whole output directory (metrics.json, per_user.parquet…) that the report reads.
    """
    import json
    import os

    from components.evaluate import evaluate as run_evaluate
    from components.kfp_support import copy_file, restore_ints, write_artifact_dir

    def produce(out_dir):
        return run_evaluate(
            dataset_dir=dataset.path,
            stats_dir=stats.path,
            model_dir=model.path,
            output_dir=out_dir,
            **restore_ints(options),
        )

    write_artifact_dir(evaluation.path, produce)
    evaluation.metadata["variant"] = variant
    with open(os.path.join(evaluation.path, "metrics.json")) as handle:
        result = json.load(handle)
    # Overall Recall/NDCG@K and coverage, shown in the KFP/Vertex UI ("@" spelled "_at_").
    for name, value in result["summary"].items():
        if isinstance(value, (int, float)):
            metrics.log_metric(name.replace("@", "_at_"), float(value))
    copy_file(os.path.join(evaluation.path, "metrics.md"), summary.path)


def component(image: str | None = None):
    """The evaluate component running in ``image`` (default: ``$DWLREC_CUDA_IMAGE``)."""
    return dsl.component(evaluate, base_image=image or cuda_image(), install_kfp_package=False)
