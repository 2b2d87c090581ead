"""The ``sparse-domain-dwl`` pipeline (SPEC §9).

    ingest → stats → ParallelFor(variant in stats' variant specs): train → evaluate → report

``dwlrec compile --target kubeflow|vertex`` writes one IR YAML per target; ``dwlrec run --local``
executes such a YAML file with kfp's local runners, so the file a user submits is the file the
tests run. What is fixed at compile time (``PipelineConfig``): the images, the machine of train
and evaluate (``MachineConfig``: GPU type and count, CPU, memory, scheduling), retries, durable
checkpoints, fan-out parallelism and caching. The data and the science are run-time parameters
(``sparse_domain_dwl``'s signature); their defaults are the steps' own defaults.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Metrics

from components.errors import ConfigError
from components.evaluate import component as evaluate_component
from components.ingest import component as ingest_component
from components.kfp_support import cpu_image, cuda_image
from components.options import Checked
from components.report import component as report_component
from components.stats import component as stats_component
from pipelines.distributed import train_op_for, train_task_params
from pipelines.ingest_spark import SparkIngestConfig, check_spark_ingest, spark_ingest_tasks
from pipelines.targets import MachineConfig, request_machine

PIPELINE_NAME = "sparse-domain-dwl"
DEFAULT_VARIANTS = ["none", "fixed", "dynamic"]
DEFAULT_EPOCHS = 50  # the train step's budget; early stopping ends most runs sooner


@dataclass
class PipelineConfig(Checked):
    """Compile-time settings of the pipeline."""

    image: str = field(default_factory=cpu_image)  # ingest, stats, report (and train/eval on CPU)
    cuda_image: str = field(default_factory=cuda_image)  # train and evaluate when machine.gpu
    machine: MachineConfig = field(default_factory=MachineConfig)
    parallelism: int = 0  # variants trained at once (0 = all)
    enable_caching: bool = True
    retries: int = 2  # per task; a retried train task resumes from its last checkpoint
    retry_backoff_s: int = 60  # first wait, doubled at each retry
    # Durable train checkpoints: <checkpoint_root>/<run id>/<variant>; "" = the pipeline root
    # (a local path, or gs:// through Vertex's /gcs mount). Kubeflow's minio:// root has no
    # mount: give a mounted volume's path there, or retries start training over.
    checkpoint_root: str = ""
    checkpoint_pvc: str = ""  # kubeflow: a PersistentVolumeClaim mounted at checkpoint_root
    # Nodes of each train task (machine.processes per node). > 1: vertex runs train as a custom
    # job with worker pools, kubeflow as a Trainer TrainJob (pipelines/distributed.py).
    distributed_train: int = 1
    machine_type: str = ""  # vertex --distributed-train: the nodes' machine type ("" = derived)
    trainjob_runtime: str = "torch-distributed"  # kubeflow: the TrainJob's (Cluster)TrainingRuntime
    # "spark": ingest as a SparkApplication (kubeflow) / Dataproc batch (vertex), see
    # pipelines/ingest_spark.py; "local": inside the ingest task
    ingest_engine: str = "local"
    spark: SparkIngestConfig = field(default_factory=SparkIngestConfig)

    def validate(self) -> None:
        self.machine.validate()
        from pipelines.distributed import check_distributed

        check_distributed(self)
        check_spark_ingest(self)
        if self.parallelism < 0:
            raise ConfigError(f"--parallelism must be >= 0, got {self.parallelism}")
        if self.retries < 0 or self.retry_backoff_s < 0:
            raise ConfigError("--retries and --retry-backoff must be >= 0")
        root, target = self.checkpoint_root, self.machine.target
        if root and target == "vertex" and not root.startswith("gs://"):
            raise ConfigError(
                f"--checkpoint-root {root!r}: Vertex AI tasks reach buckets only: give gs://…"
            )
        if root and target == "kubeflow" and "://" in root:
            raise ConfigError(
                f"--checkpoint-root {root!r}: on Kubeflow give the path of a volume mounted "
                "into the train task (object stores have no mount there)"
            )
        if self.checkpoint_pvc and (target != "kubeflow" or not root.startswith("/")):
            raise ConfigError(
                "--checkpoint-pvc needs --target kubeflow and an absolute --checkpoint-root "
                "(where the claim is mounted in the train task)"
            )
        for name, image in (("--image", self.image), ("--cuda-image", self.cuda_image)):
            if not image or any(c.isspace() for c in image):
                raise ConfigError(f"{name} {image!r}: expected an image reference")

    @property
    def step_image(self) -> str:
        """The image of train and evaluate."""
        return self.cuda_image if self.machine.gpu else self.image


class PipelineOutputs(NamedTuple):
    report_html: HTML
    report_md: Markdown
    report: Dataset
    metrics: Metrics


def build_pipeline(config: PipelineConfig | None = None):
    """Return the ``sparse-domain-dwl`` pipeline function for ``config``."""
    config = config or PipelineConfig()
    config.validate()
    machine = config.machine
    ingest_op = ingest_component.component(config.image)
    stats_op = stats_component.component(config.image)
    train_op = train_op_for(config)
    evaluate_op = evaluate_component.component(config.step_image)
    report_op = report_component.component(config.image)
    checkpoint_root = config.checkpoint_root or dsl.PIPELINE_ROOT_PLACEHOLDER

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train sequential recommenders with unweighted and domain-weighted losses "
        "(fixed, inverse, dynamic = DWL) and compare them per item domain with full-ranking "
        "metrics and confidence intervals.",
    )
    def sparse_domain_dwl(
        source: str = "synthetic",
        input_uri: str = "",
        ingest_options: dict = {},  # noqa: B006 (kfp needs literal defaults)
        fixed_domains: list = [],  # noqa: B006
        stats_options: dict = {},  # noqa: B006
        variants: list = DEFAULT_VARIANTS,  # noqa: B006
        loss: str = "ce",
        epochs: int = DEFAULT_EPOCHS,
        train_options: dict = {},  # noqa: B006
        exclude_seen: bool = False,
        eval_options: dict = {},  # noqa: B006
        baseline: str = "none",  # a variant's name
        report_options: dict = {},  # noqa: B006
    ) -> PipelineOutputs:
        """ingest → stats → (train → evaluate) per variant → report.

        source/input_uri/ingest_options: what `python -m components.ingest` takes (source
        `synthetic` needs no input). fixed_domains/stats_options: the stats step's options.
        variants: what to train side by side: scheme names (none, fixed, inverse, dynamic)
        or named specs ({"name": "dyn-composite", "scheme": "dynamic", "target": "composite"},
        whose other keys are weighting parameters or train options of that variant only).
        loss/epochs/train_options: the train step's options. exclude_seen: the run's evaluation
        protocol (the user's earlier items out of the ranking) in train's validation and in
        evaluate. eval_options/report_options/baseline: the evaluate and report steps'. Options
        left out take the step's defaults.
        """
        if config.ingest_engine == "spark":
            dataset, ingest_tasks = spark_ingest_tasks(config, source, input_uri, ingest_options)
        else:
            ingest_task = ingest_op(source=source, input_uri=input_uri, options=ingest_options)
            dataset, ingest_tasks = ingest_task.outputs["dataset"], {"ingest": ingest_task}
        stats_task = stats_op(
            dataset=dataset,
            fixed_domains=fixed_domains,
            options=stats_options,
            variants=variants,
        )
        # the checked variants (named specs) that stats returns, one train → evaluate each
        specs = stats_task.outputs["Output"]
        with dsl.ParallelFor(specs, parallelism=config.parallelism) as variant:
            train_task = train_op(
                dataset=dataset,
                stats=stats_task.outputs["domain_stats"],
                variant=variant,
                loss=loss,
                epochs=epochs,
                exclude_seen=exclude_seen,
                options=train_options,
                device=machine.device,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                **train_task_params(config, checkpoint_root),
            )
            evaluate_task = evaluate_op(
                dataset=dataset,
                stats=stats_task.outputs["domain_stats"],
                model=train_task.outputs["model"],
                variant=variant,
                exclude_seen=exclude_seen,
                options=eval_options,
                device=machine.device,
            )
            if config.distributed_train == 1:  # else the custom job / TrainJob has the machines
                request_machine(train_task, machine)
            if config.checkpoint_pvc:
                from kfp import kubernetes

                kubernetes.mount_pvc(
                    train_task, pvc_name=config.checkpoint_pvc, mount_path=config.checkpoint_root
                )
            request_machine(evaluate_task, machine)
        report_task = report_op(
            evaluations=dsl.Collected(evaluate_task.outputs["evaluation"]),
            baseline=baseline,
            options=report_options,
        )
        tasks = {
            **ingest_tasks,
            "stats": stats_task,
            "train": train_task,
            "evaluate": evaluate_task,
            "report": report_task,
        }
        for name, task in tasks.items():
            task.set_display_name(name)
            task.set_caching_options(config.enable_caching)
            if config.retries:
                task.set_retry(
                    num_retries=config.retries,
                    backoff_duration=f"{config.retry_backoff_s}s",
                    backoff_factor=2.0,
                )
        return PipelineOutputs(
            report_html=report_task.outputs["report_html"],
            report_md=report_task.outputs["report_md"],
            report=report_task.outputs["report_dir"],
            metrics=report_task.outputs["metrics"],
        )

    return sparse_domain_dwl


def compile_pipeline(output_path: str, config: PipelineConfig | None = None) -> str:
    """Compile the pipeline to an IR YAML file at ``output_path``; return the path."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(config), package_path=str(output_path))
    return str(output_path)
