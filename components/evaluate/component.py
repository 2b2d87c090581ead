"""KFP component of the evaluate step: a thin wrapper over ``components.evaluate.evaluate``."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.kfp_support import cuda_image


def evaluate(
    dataset: Input[Dataset],
    stats: Input[Dataset],
    model: Input[Model],
    variant: dict,
    exclude_seen: bool,
    options: dict,
    device: str,
    metrics: Output[Metrics],
    summary: Output[Markdown],
    evaluation: Output[Dataset],
):
    """Full-ranking evaluation of one variant's model, overall and per domain/power-user cohort.

    ``variant``: an item of the stats task's output (its ``name`` keys the metrics); a
    ``logit-adjust`` variant is evaluated with ``logit_adjust="inverse"``
    (``Variant.evaluate_options``).

    ``device`` (auto | cpu | cuda, fixed when the pipeline is compiled) wins over an
    ``options["device"]``. ``metrics`` carries the overall Recall/NDCG@K and coverage under
    variant-prefixed keys (``dynamic_ndcg_at_10``, shown in the KFP/Vertex UI); ``evaluation`` is
    the whole output directory (metrics.json, per_user.parquet…) that the report reads.
    """
    import json
    import os

    from components.core.eval_artifact import METRICS_FILE, METRICS_MD_FILE
    from components.core.variants import parse_variant
    from components.evaluate.evaluate import evaluate as run_evaluate
    from components.kfp_support import copy_file, restore_ints, ui_metric_key, write_artifact_dir

    spec = parse_variant(restore_ints(variant), "variant")

    def produce(out_dir):
        return run_evaluate(
            dataset_dir=dataset.path,
            stats_dir=stats.path,
            model_dir=model.path,
            output_dir=out_dir,
            **{
                **spec.evaluate_options(restore_ints(options)),
                "device": device,
                "exclude_seen": exclude_seen,
            },
        )

    write_artifact_dir(evaluation.path, produce)
    name = spec.name
    evaluation.metadata["variant"] = name
    with open(os.path.join(evaluation.path, METRICS_FILE)) as handle:
        result = json.load(handle)
    for key, value in result["summary"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(ui_metric_key(name, key), float(value))
    copy_file(os.path.join(evaluation.path, METRICS_MD_FILE), summary.path)


def component(image: str | None = None):
    """The evaluate component running in ``image`` (default: ``$DWLREC_CUDA_IMAGE``)."""
    return dsl.component(evaluate, base_image=image or cuda_image(), install_kfp_package=False)
