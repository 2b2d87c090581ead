"""``dwlrec compile --ingest-on spark`` (SPEC §10, issue 16): the ingest step as a Spark job on the
target's own Spark service; stats, train and evaluate read its Dataset artifact as before.

- ``kubeflow``: one light launcher task (``components.ingest.component.ingest_spark_app``) that
  creates a Spark Operator ``SparkApplication`` (``sparkoperator.k8s.io/v1beta2``) running
  ``spark_main.py`` in the project image, with ``--output <root>/<run id>/ingest`` on a shared
  volume (``--spark-pvc`` at ``--spark-root``, default the checkpoint volume; mounted in the
  launcher and in the driver), waits for COMPLETED/FAILED and copies the verified output into
  its Dataset artifact.
- ``vertex``: ``ingest-spark-args`` (the ingest CLI's arguments and the gs:// output prefix under
  the pipeline root) → google-cloud-pipeline-components' ``DataprocPySparkBatchOp`` (Dataproc
  Serverless, the project image as its container, ``spark_main.py`` from the image or
  ``--spark-main-file gs://…``) → ``ingest-from-gcs`` (the verified output as the Dataset).

Sizes left at 0/"" take the engine's defaults (the operator's: ``spark_app.SparkAppSpec``;
Dataproc Serverless's own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from components.errors import ConfigError
from components.ingest.spark_app import JVM_SIZE
from components.options import Checked

INGEST_ENGINES = ("local", "spark")
DATAPROC_STEP = "dataproc"  # exec-dataproc-create-pyspark-batch
GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:"
DATAPROC_CORES = (4, 8, 16)
# the launcher task only waits and copies: a small request (literals: SPEC §9)
LAUNCHER_CPU, LAUNCHER_CPU_LIMIT, LAUNCHER_MEMORY, LAUNCHER_MEMORY_LIMIT = "250m", "1", "512M", "2G"
_MAIN_FILE = re.compile(r"(local|gs|s3a|https?)://\S+\.py")


@dataclass
class SparkIngestConfig(Checked):
    """The Spark job's settings (compile time); 0 / "" = the engine's default."""

    executors: int = 0
    executor_cores: int = 0
    executor_memory: str = ""
    driver_cores: int = 0
    driver_memory: str = ""
    conf: dict[str, str] = field(default_factory=dict)  # sparkConf / Dataproc properties
    service_account: str = ""  # kubeflow: the driver's ("spark"); vertex: the batch's
    image: str = ""  # kubeflow: the SparkApplication's ("" = spark_image_for(--image))
    main_file: str = ""  # "" = spark_main.py in the image (spark_app.MAIN_FILE)
    pvc: str = ""  # kubeflow: the shared volume ("" = --checkpoint-pvc) …
    root: str = ""  # … and where it is mounted ("" = --checkpoint-root)
    dataproc_project: str = ""  # vertex: "" = the pipeline job's project
    dataproc_region: str = ""  # vertex: required (`dwlrec submit --vertex`: --region)
    dataproc_runtime: str = ""  # vertex: Dataproc Serverless runtime version ("" = its default)

    def validate(self) -> None:
        for flag, number in (
            ("--spark-executors", self.executors),
            ("--spark-executor-cores", self.executor_cores),
            ("--spark-driver-cores", self.driver_cores),
        ):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise ConfigError(f"{flag} {number!r}: expected an integer >= 1 (0: the default)")
        for flag, text in (
            ("--spark-executor-memory", self.executor_memory),
            ("--spark-driver-memory", self.driver_memory),
        ):
            if text and not JVM_SIZE.fullmatch(text):
                raise ConfigError(f"{flag} {text!r}: expected a JVM size such as 512m or 8g")
        for key, value in self.conf.items():
            if not key or not isinstance(value, str) or any(c.isspace() for c in key):
                raise ConfigError(f"--spark-conf {key}={value}: expected KEY=VALUE")
        if self.main_file and not _MAIN_FILE.fullmatch(self.main_file):
            raise ConfigError(
                f"--spark-main-file {self.main_file!r}: expected a .py URI: local:///path/in/"
                "the/image/spark_main.py or gs://bucket/…/spark_main.py"
            )


def spark_image_for(image: str) -> str:
    """The Spark image built beside ``image`` (docker/build.sh spark): the repository's name +
    "-spark", same tag — REGISTRY/dwlrec:0.2 → REGISTRY/dwlrec-spark:0.2."""
    name, at, _ = image.partition("@")
    if at:
        raise ConfigError(
            f"--image {image!r} is pinned by digest: give the Spark image with --spark-image"
        )
    head, slash, last = name.rpartition("/")
    repository, colon, tag = last.partition(":")
    return f"{head}{slash}{repository}-spark{colon}{tag}"


def kubeflow_volume(config) -> tuple[str, str]:
    """(claim, mount path) of the volume the driver writes and the launcher reads."""
    spark = config.spark
    if spark.pvc or spark.root:
        if not (spark.pvc and spark.root):
            raise ConfigError("--spark-pvc CLAIM and --spark-root PATH go together")
        return spark.pvc, spark.root
    return config.checkpoint_pvc, config.checkpoint_root if config.checkpoint_pvc else ""


def check_spark_ingest(config) -> None:
    """The ``--ingest-on`` settings of a PipelineConfig, before anything compiles."""
    engine, spark, target = config.ingest_engine, config.spark, config.machine.target
    if engine not in INGEST_ENGINES:
        raise ConfigError(f"--ingest-on {engine!r}: expected one of {list(INGEST_ENGINES)}")
    if engine == "local":
        if spark != SparkIngestConfig():
            raise ConfigError("--spark-* and --dataproc-* settings apply to --ingest-on spark")
        return
    from pipelines.distributed import check_cluster_image

    check_cluster_image("--image", config.image)  # the driver's and executors' image
    if target == "vertex":
        if spark.image:
            raise ConfigError(
                "--spark-image applies to --target kubeflow: Dataproc Serverless runs --image "
                "and mounts its own Spark and Java into it"
            )
        try:
            import google_cloud_pipeline_components  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "--target vertex --ingest-on spark needs google-cloud-pipeline-components: "
                "pip install 'dwlrec[vertex]'"
            ) from exc
        if spark.pvc or spark.root:
            raise ConfigError("--spark-pvc/--spark-root apply to --target kubeflow only")
        if not spark.dataproc_region:
            raise ConfigError(
                "--target vertex --ingest-on spark needs --dataproc-region REGION (where the "
                "Dataproc Serverless batch runs; dwlrec submit --vertex uses its --region)"
            )
        if spark.main_file and not spark.main_file.startswith(("local://", "gs://")):
            raise ConfigError(
                f"--spark-main-file {spark.main_file!r}: Dataproc takes gs:// or local://"
            )
        for flag, cores in (
            ("--spark-executor-cores", spark.executor_cores),
            ("--spark-driver-cores", spark.driver_cores),
        ):
            if cores and cores not in DATAPROC_CORES:
                raise ConfigError(f"{flag} {cores}: Dataproc Serverless takes 4, 8 or 16")
        return
    if spark.dataproc_project or spark.dataproc_region or spark.dataproc_runtime:
        raise ConfigError("--dataproc-project/-region/-runtime apply to --target vertex only")
    pvc, root = kubeflow_volume(config)
    if not pvc:
        raise ConfigError(
            "--target kubeflow --ingest-on spark needs a shared volume (ReadWriteMany) where the "
            "Spark driver writes and the ingest task reads: --spark-pvc CLAIM --spark-root PATH "
            "(or --checkpoint-pvc/--checkpoint-root)"
        )
    if not root.startswith("/"):
        raise ConfigError(f"--spark-root {root!r}: expected the claim's absolute mount path")
    spark_app(config)  # the SparkAppSpec's own checks


def spark_app(config) -> dict:
    """The SparkAppSpec fields of the kubeflow launcher (a compile-time constant)."""
    from components.ingest.spark_app import SparkAppSpec

    spark = config.spark
    pvc, root = kubeflow_volume(config)
    from pipelines.distributed import check_cluster_image

    image = spark.image or spark_image_for(config.image)  # Java, Spark and their entrypoint
    check_cluster_image("--spark-image", image)
    app: dict = {"image": image, "pvc": pvc, "mount_path": root}
    for key, value in (
        ("executor_instances", spark.executors),
        ("executor_cores", spark.executor_cores),
        ("executor_memory", spark.executor_memory),
        ("driver_cores", spark.driver_cores),
        ("driver_memory", spark.driver_memory),
        ("service_account", spark.service_account),
        ("main_file", spark.main_file),
    ):
        if value:
            app[key] = value
    if spark.conf:
        app["spark_conf"] = dict(spark.conf)
    SparkAppSpec(**app).validate()
    return app


def dataproc_properties(spark: SparkIngestConfig) -> dict[str, str]:
    """The batch's Spark properties: the sizes given, then ``--spark-conf``."""
    properties = {
        name: str(value)
        for name, value in (
            ("spark.executor.instances", spark.executors),
            ("spark.executor.cores", spark.executor_cores),
            ("spark.executor.memory", spark.executor_memory),
            ("spark.driver.cores", spark.driver_cores),
            ("spark.driver.memory", spark.driver_memory),
        )
        if value
    }
    return {**properties, **spark.conf}


def spark_ingest_tasks(config, source, input_uri, ingest_options):
    """(the Dataset channel, {display name: task}) of the Spark ingest inside the pipeline."""
    from kfp import dsl

    from components.ingest import component as ingest_component
    from components.ingest.spark_app import MAIN_FILE

    spark = config.spark
    if config.machine.target == "kubeflow":
        from kfp import kubernetes

        launcher = ingest_component.spark_component(ingest_component.ingest_spark_app, config.image)
        task = launcher(
            source=source,
            input_uri=input_uri,
            options=ingest_options,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            spark_app=spark_app(config),
        )
        pvc, root = kubeflow_volume(config)
        kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=root)
        task.set_cpu_request(LAUNCHER_CPU).set_cpu_limit(LAUNCHER_CPU_LIMIT)
        task.set_memory_request(LAUNCHER_MEMORY).set_memory_limit(LAUNCHER_MEMORY_LIMIT)
        return task.outputs["dataset"], {"ingest": task}
    from google_cloud_pipeline_components.v1.dataproc import DataprocPySparkBatchOp

    prepare = ingest_component.spark_component(ingest_component.ingest_spark_args, config.image)
    args_task = prepare(
        source=source,
        input_uri=input_uri,
        options=ingest_options,
        pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    )
    batch_inputs = {
        "main_python_file_uri": spark.main_file or MAIN_FILE,
        "container_image": config.image,
        "args": args_task.outputs["args"],
        "location": spark.dataproc_region,
        "runtime_config_properties": dataproc_properties(spark),
        "labels": {"app": "dwlrec", "step": "ingest"},
    }
    for key, value in (
        ("project", spark.dataproc_project),
        ("runtime_config_version", spark.dataproc_runtime),
        ("service_account", spark.service_account),
    ):
        if value:
            batch_inputs[key] = value
    batch = DataprocPySparkBatchOp(**batch_inputs)
    fetch = ingest_component.spark_component(ingest_component.ingest_from_gcs, config.image)
    fetch_task = fetch(output_uri=args_task.outputs["output_uri"]).after(batch)
    tasks = {"ingest-args": args_task, "ingest-dataproc": batch, "ingest": fetch_task}
    return fetch_task.outputs["dataset"], tasks


def dataproc_problems(name: str, container: dict, spec: dict, config) -> list[str]:
    """What ``spec_check`` checks of the Dataproc batch executor instead of a step's."""
    problems = []
    if not container["image"].startswith(GCPC_IMAGE):
        problems.append(f"{name}: image {container['image']!r} is not the Dataproc launcher")
    if container.get("resources", {}).get("accelerator"):
        problems.append(f"{name}: the Dataproc launcher must not request an accelerator")
    for task_name, task in spec["root"]["dag"]["tasks"].items():
        if task["componentRef"]["name"] != f"comp-{name.removeprefix('exec-')}":
            continue
        params = task["inputs"]["parameters"]
        image = params.get("container_image", {}).get("runtimeValue", {}).get("constant")
        if image != config.image:
            problems.append(f"{task_name}: container_image {image!r}, expected {config.image!r}")
    return problems


# ---- command line (dwlrec compile / submit) ----


def add_spark_arguments(parser) -> None:
    """The ``--ingest-on`` flags of ``dwlrec compile`` and ``dwlrec submit``."""
    group = parser.add_argument_group("ingest on a Spark cluster (compile-time literals)")
    group.add_argument(
        "--ingest-on",
        default="local",
        metavar="{local,spark}",
        help="local: ingest inside the pipeline task; spark: as a Spark job — kubeflow: a Spark "
        "Operator SparkApplication (needs --spark-pvc/--spark-root or the checkpoint volume); "
        "vertex: a Dataproc Serverless batch (needs --dataproc-region)",
    )
    default = "0 / empty: the operator's or Dataproc's default"
    for flag, kind, metavar, what in (
        ("--spark-executors", int, "N", "executor instances"),
        ("--spark-executor-cores", int, "N", "cores per executor"),
        ("--spark-executor-memory", str, "SIZE", "memory per executor, e.g. 8g"),
        ("--spark-driver-cores", int, "N", "driver cores"),
        ("--spark-driver-memory", str, "SIZE", "driver memory, e.g. 4g"),
    ):
        group.add_argument(
            flag, type=kind, default=kind(), metavar=metavar, help=f"{what} ({default})"
        )
    group.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="Spark property"
    )
    group.add_argument(
        "--spark-service-account",
        default="",
        help="kubeflow: the driver's service account (default spark); vertex: the batch's",
    )
    group.add_argument(
        "--spark-main-file",
        default="",
        help="the job file: default spark_main.py in --image (local://…); or gs://…/spark_main.py",
    )
    group.add_argument(
        "--spark-image",
        default="",
        help="kubeflow: the SparkApplication's image, the project with Java 17, pyspark and the "
        "Spark-on-Kubernetes entrypoint (docker/build.sh spark); default --image's repository + "
        "'-spark', same tag (REGISTRY/dwlrec:0.2 -> REGISTRY/dwlrec-spark:0.2)",
    )
    group.add_argument("--spark-pvc", default="", help="kubeflow: the shared volume's claim")
    group.add_argument("--spark-root", default="", help="kubeflow: where --spark-pvc is mounted")
    group.add_argument("--dataproc-project", default="", help="vertex: default the run's project")
    group.add_argument("--dataproc-region", default="", help="vertex: the batch's region")
    group.add_argument("--dataproc-runtime", default="", help="vertex: runtime version, e.g. 2.3")


def spark_settings(args) -> dict:
    """PipelineConfig's ``ingest_engine`` and ``spark`` from the parsed command line (commands
    without these flags: the in-task ingest)."""
    if not hasattr(args, "ingest_on"):
        return {}
    conf = {}
    for pair in args.spark_conf:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf {pair!r}: expected KEY=VALUE")
        conf[key.strip()] = value
    region = args.dataproc_region or (getattr(args, "region", None) or "")
    spark = SparkIngestConfig(
        executors=args.spark_executors,
        executor_cores=args.spark_executor_cores,
        executor_memory=args.spark_executor_memory,
        driver_cores=args.spark_driver_cores,
        driver_memory=args.spark_driver_memory,
        conf=conf,
        service_account=args.spark_service_account,
        main_file=args.spark_main_file,
        image=args.spark_image,
        pvc=args.spark_pvc,
        root=args.spark_root,
        dataproc_project=args.dataproc_project,
        dataproc_region=region if args.ingest_on == "spark" else args.dataproc_region,
        dataproc_runtime=args.dataproc_runtime,
    )
    return {"ingest_engine": args.ingest_on, "spark": spark}
