"""The ``sparse-domain-dwl`` pipeline (SPEC §9).

    ingest → stats → ParallelFor(variant in variants): train → evaluate → report (dsl.Collected)

One IR YAML runs unchanged on Kubeflow Pipelines, Vertex AI Pipelines and kfp's local runners.
What is fixed at compile time (``PipelineConfig``): the container images (a task needs a
literal image), whether train/evaluate request a GPU, the fan-out parallelism and caching.
Everything else is a run-time pipeline parameter (see ``sparse_domain_dwl``'s signature).

Fan-in: ``dsl.ParallelFor`` over the ``variants`` list parameter, then ``dsl.Collected`` of the
evaluate outputs into the report. kfp 2.17's local runners support both (checked by
tests/test_pipeline.py end to end), and so do the KFP backend and Vertex AI.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown

from components.evaluate import component as evaluate_component
from components.ingest import component as ingest_component
from components.kfp_support import cpu_image, cuda_image
from components.report import component as report_component
from components.stats import component as stats_component
from components.train import component as train_component

PIPELINE_NAME = "sparse-domain-dwl"
DEFAULT_VARIANTS = ["none", "fixed", "dynamic"]

# The embedded demo: a synthetic dataset with planted sparse domains, sized so that the whole
# pipeline (3 variants) runs in a few minutes on a 2-core CPU.
DEMO_INGEST_OPTIONS = {"num_users": 800, "num_items": 300, "num_domains": 6, "seed": 0}
DEMO_TRAIN_OPTIONS = {"max_len": 50, "batch_size": 128, "seed": 0}
DEMO_EPOCHS = 8

# Vertex AI names GPUs like NVIDIA_TESLA_T4 / NVIDIA_L4; on Kubeflow the type is the Kubernetes
# resource name (nvidia.com/gpu). `dwlrec submit --kfp-host` switches the default.
VERTEX_ACCELERATOR = "NVIDIA_TESLA_T4"
KUBEFLOW_ACCELERATOR = "nvidia.com/gpu"


@dataclass
class PipelineConfig:
    """Compile-time settings of the pipeline."""

    image: str = field(default_factory=cpu_image)  # ingest, stats, report (and train/eval on CPU)
    cuda_image: str = field(default_factory=cuda_image)  # train and evaluate when gpu=True
    gpu: bool = True  # train/evaluate request accelerator_type × accelerator_count
    parallelism: int = 0  # variants trained at once (0 = all)
    # CPU/memory limits on train/evaluate. Off for kfp.local: it ignores them, and its
    # ParallelFor cannot resolve resource placeholders (pipeline parameters) inside the loop.
    resource_limits: bool = True
    enable_caching: bool = True


class PipelineOutputs(NamedTuple):
    report_html: HTML
    report_md: Markdown


def build_pipeline(config: PipelineConfig | None = None):
    """Return the ``sparse-domain-dwl`` pipeline function for ``config``."""
    config = config or PipelineConfig()
    step_image = config.cuda_image if config.gpu else config.image
    ingest_op = ingest_component.component(config.image)
    stats_op = stats_component.component(config.image)
    train_op = train_component.component(step_image)
    evaluate_op = evaluate_component.component(step_image)
    report_op = report_component.component(config.image)

    def request_resources(task, accelerator_type, accelerator_count, cpu_limit, memory_limit):
        if config.resource_limits:
            task.set_cpu_limit(cpu_limit).set_memory_limit(memory_limit)
        if config.gpu:
            task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train sequential recommenders with unweighted, fixed and dynamic (DWL) "
        "domain weighting and compare them per item domain with full-ranking metrics.",
    )
    def sparse_domain_dwl(
        source: str = "synthetic",
        input_uri: str = "",
        ingest_options: dict = DEMO_INGEST_OPTIONS,  # noqa: B006 (kfp needs literal defaults)
        fixed_domains: list = [],  # noqa: B006
        stats_options: dict = {},  # noqa: B006
        variants: list = DEFAULT_VARIANTS,  # noqa: B006
        loss: str = "ce",
        epochs: int = DEMO_EPOCHS,
        train_options: dict = DEMO_TRAIN_OPTIONS,  # noqa: B006
        eval_options: dict = {},  # noqa: B006
        baseline: str = "none",
        report_options: dict = {},  # noqa: B006
        accelerator_type: str = VERTEX_ACCELERATOR,
        accelerator_count: int = 1,
        cpu_limit: str = "8",
        memory_limit: str = "32G",
    ) -> PipelineOutputs:
        """ingest → stats → (train → evaluate) per variant → report.

        source/input_uri/ingest_options: what `python -m components.ingest` takes (source
        `synthetic` needs no input). fixed_domains/stats_options: the stats step's options.
        variants: weighting schemes to train (none, fixed, inverse, dynamic). loss/epochs/
        train_options: the train step's options. eval_options/report_options/baseline: the
        evaluate and report steps'. accelerator_type/count, cpu_limit, memory_limit: what
        train and evaluate request.
        """
        ingest_task = ingest_op(source=source, input_uri=input_uri, options=ingest_options)
        ingest_task.set_display_name("ingest")
        stats_task = stats_op(
            dataset=ingest_task.outputs["dataset"],
            fixed_domains=fixed_domains,
            options=stats_options,
        )
        stats_task.set_display_name("stats")

        with dsl.ParallelFor(variants, parallelism=config.parallelism) as variant:
            train_task = train_op(
                dataset=ingest_task.outputs["dataset"],
                stats=stats_task.outputs["domain_stats"],
                variant=variant,
                loss=loss,
                epochs=epochs,
                options=train_options,
            )
            request_resources(
                train_task.set_display_name("train"),
                accelerator_type,
                accelerator_count,
                cpu_limit,
                memory_limit,
            )
            evaluate_task = evaluate_op(
                dataset=ingest_task.outputs["dataset"],
                stats=stats_task.outputs["domain_stats"],
                model=train_task.outputs["model"],
                variant=variant,
                options=eval_options,
            )
            request_resources(
                evaluate_task.set_display_name("evaluate"),
                accelerator_type,
                accelerator_count,
                cpu_limit,
                memory_limit,
            )

        report_task = report_op(
            evaluations=dsl.Collected(evaluate_task.outputs["evaluation"]),
            baseline=baseline,
            options=report_options,
        )
        report_task.set_display_name("report")

        for task in (ingest_task, stats_task, train_task, evaluate_task, report_task):
            task.set_caching_options(config.enable_caching)
        return PipelineOutputs(
            report_html=report_task.outputs["report_html"],
            report_md=report_task.outputs["report_md"],
        )

    return sparse_domain_dwl


def compile_pipeline(output_path: str, config: PipelineConfig | None = None) -> str:
    """Compile the pipeline to an IR YAML file at ``output_path``; return the path."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(config), package_path=str(output_path))
    return str(output_path)
