"""``dwlrec compile|run|submit``: the Kubeflow pipeline from the command line.

dwlrec compile --target kubeflow|vertex [--no-gpu] [--accelerator T --accelerator-count N]
               [--cpu C --memory M] --image I --cuda-image I --output pipeline.yaml
dwlrec run --local [--spec pipeline.yaml] [--runner subprocess|docker] [--param NAME=VALUE …]
dwlrec submit --vertex --project P --region R --pipeline-root gs://… [--param …]
dwlrec submit --kfp-host URL [--namespace NS] [--token T] [--param …]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from components.clitools import HelpFormatter, run_cli
from components.errors import ConfigError
from components.options import field_default

log = logging.getLogger("dwlrec.pipeline")

PARAM_HELP = (
    "pipeline parameter NAME=VALUE (repeatable); VALUE is JSON when it parses as JSON, else a "
    'string, e.g. --param epochs=5 --param variants=\'["none","dynamic"]\' '
    "--param ingest_options='{\"num_users\": 300}'"
)


def _gpu_args(group) -> None:
    from pipelines.pipeline import PipelineConfig
    from pipelines.targets import MachineConfig

    group.add_argument(
        "--no-gpu", action="store_true", help="train/evaluate request no GPU and run in --image"
    )
    group.add_argument(
        "--accelerator",
        help="GPU type: a Vertex enum (default NVIDIA_L4) or a Kubernetes resource "
        "(default nvidia.com/gpu)",
    )
    group.add_argument(
        "--accelerator-count",
        type=int,
        default=field_default(MachineConfig, "accelerator_count"),
        help="GPUs per train task (> 1: torchrun --nproc-per-node N inside the container)",
    )
    group.add_argument(
        "--cpu", default=field_default(MachineConfig, "cpu"), help="CPUs of train/evaluate"
    )
    group.add_argument(
        "--memory", default=field_default(MachineConfig, "memory"), help="memory of train/evaluate"
    )
    group.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="kubeflow: node label train/evaluate must run on (repeatable)",
    )
    group.add_argument(
        "--toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="kubeflow: taint train/evaluate tolerate, e.g. nvidia.com/gpu:NoSchedule",
    )
    group.add_argument(
        "--distributed-train",
        type=int,
        default=field_default(PipelineConfig, "distributed_train"),
        metavar="N",
        help="nodes per train task (x --accelerator-count processes each): > 1 runs a Vertex "
        "custom job with worker pools, or a Kubeflow Trainer TrainJob (needs --checkpoint-pvc)",
    )
    group.add_argument(
        "--machine-type",
        default=field_default(PipelineConfig, "machine_type"),
        help="vertex --distributed-train: the nodes' machine type (default from --accelerator "
        "and --accelerator-count, e.g. g2-standard-8 for 1 x NVIDIA_L4)",
    )
    group.add_argument(
        "--trainjob-runtime",
        default=field_default(PipelineConfig, "trainjob_runtime"),
        help="kubeflow --distributed-train: the TrainJob's ClusterTrainingRuntime",
    )
    group.add_argument(
        "--task-timeout",
        type=int,
        default=field_default(MachineConfig, "timeout_s"),
        help="kubeflow: seconds before a train/evaluate pod is stopped (0 = no limit)",
    )


def _machine_args(parser: argparse.ArgumentParser, target: str | None, gpu: bool = True) -> None:
    """Compile options; ``target`` None adds --target; ``gpu`` False (local runs) leaves out the
    machine flags: a local run compiles the kubeflow target without a GPU."""
    from pipelines.ingest_spark import add_spark_arguments
    from pipelines.pipeline import PipelineConfig
    from pipelines.targets import TARGETS, MachineConfig

    group = parser.add_argument_group("target and machine (compile-time literals)")
    if not gpu:
        parser.set_defaults(
            no_gpu=True,
            accelerator=None,
            accelerator_count=field_default(MachineConfig, "accelerator_count"),
            cpu=field_default(MachineConfig, "cpu"),
            memory=field_default(MachineConfig, "memory"),
            node_selector=[],
            toleration=[],
            task_timeout=0,
            distributed_train=field_default(PipelineConfig, "distributed_train"),
            machine_type=field_default(PipelineConfig, "machine_type"),
            trainjob_runtime=field_default(PipelineConfig, "trainjob_runtime"),
        )
    if target is None:
        group.add_argument(
            "--target",
            choices=TARGETS,
            default=field_default(MachineConfig, "target"),
            help="backend the spec is for: GPU naming and scheduling fields differ",
        )
    if gpu:
        _gpu_args(group)
        add_spark_arguments(parser)
    group.add_argument(
        "--image", help="CPU image of every step (default $DWLREC_IMAGE or dwlrec:latest)"
    )
    group.add_argument(
        "--cuda-image",
        help="image of train/evaluate when a GPU is requested (default $DWLREC_CUDA_IMAGE or "
        "dwlrec-cuda:latest)",
    )
    runs = parser.add_argument_group("tasks")
    runs.add_argument(
        "--parallelism",
        type=int,
        default=field_default(PipelineConfig, "parallelism"),
        help="variants trained at the same time (0 = all)",
    )
    runs.add_argument(
        "--retries",
        type=int,
        default=field_default(PipelineConfig, "retries"),
        help="retries of a failed task; a retried train task resumes from its checkpoint",
    )
    runs.add_argument(
        "--retry-backoff",
        type=int,
        default=field_default(PipelineConfig, "retry_backoff_s"),
        help="seconds before the first retry (doubled at each)",
    )
    runs.add_argument(
        "--checkpoint-root",
        default=field_default(PipelineConfig, "checkpoint_root"),
        help="durable train checkpoints (local/mounted path or gs://); '' = the pipeline root",
    )
    runs.add_argument(
        "--checkpoint-pvc",
        default=field_default(PipelineConfig, "checkpoint_pvc"),
        help="kubeflow: PersistentVolumeClaim mounted at --checkpoint-root in train tasks",
    )
    runs.add_argument("--no-cache", action="store_true", help="compile with caching off")


def _param_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help=PARAM_HELP
    )
    parser.add_argument(
        "--params-file", help="JSON object of pipeline parameters (--param entries override it)"
    )


def pipeline_config(args, target: str | None = None):
    """The PipelineConfig the command-line options describe (validated)."""
    from components.kfp_support import cpu_image, cuda_image
    from pipelines.ingest_spark import spark_settings
    from pipelines.pipeline import PipelineConfig
    from pipelines.targets import MachineConfig, Toleration, parse_node_selector

    machine = MachineConfig(
        target=target or args.target,
        gpu=not args.no_gpu,
        accelerator=args.accelerator or "",
        accelerator_count=args.accelerator_count,
        cpu=str(args.cpu),
        memory=str(args.memory),
        node_selector=parse_node_selector(args.node_selector),
        tolerations=[Toleration.parse(t) for t in args.toleration],
        timeout_s=args.task_timeout,
    )
    config = PipelineConfig(
        image=args.image or cpu_image(),
        cuda_image=args.cuda_image or cuda_image(),
        machine=machine,
        parallelism=args.parallelism,
        enable_caching=not args.no_cache,
        retries=args.retries,
        retry_backoff_s=args.retry_backoff,
        checkpoint_root=args.checkpoint_root,
        checkpoint_pvc=args.checkpoint_pvc,
        distributed_train=args.distributed_train,
        machine_type=args.machine_type,
        trainjob_runtime=args.trainjob_runtime,
        **spark_settings(args),
    )
    return config


def compile_checked(path: str | Path, config) -> str:
    """Compile ``config`` to ``path`` and check the result the way a backend reads it; the file
    appears only when both succeed (an existing file of that name is replaced)."""
    from pipelines.pipeline import compile_pipeline
    from pipelines.spec_check import check_spec_file

    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"--output {path}: a pipeline spec is a .yaml file")
    if path.is_dir():
        raise ConfigError(f"--output {path}: is a directory; give a .yaml file path")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--output {path}: {path.parent} is not a writable directory")
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}.yaml")
    try:
        compile_pipeline(str(staging), config)
        check_spec_file(staging, config)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return str(path)


def _params(args) -> dict:
    from pipelines.params import parse_params
    from pipelines.validate import check_run_params, with_demo_defaults

    params = with_demo_defaults(parse_params(args.param, args.params_file))
    check_run_params(params)
    return params


def _compile(args) -> None:
    config = pipeline_config(args)
    path = compile_checked(args.output, config)
    gpu = (
        f"{config.machine.accelerator_count} x {config.machine.accelerator}"
        if config.machine.gpu
        else "no GPU"
    )
    nodes = config.distributed_train
    where = f", train on {nodes} nodes" if nodes > 1 else ""
    where += ", ingest on Spark" if config.ingest_engine == "spark" else ""
    print(f"wrote {path} (target {config.machine.target}, train/evaluate: {gpu}{where})")


def _run(args) -> None:
    from pipelines.local import run_local, task_threads

    if not args.local:
        raise ConfigError(
            "dwlrec run only runs locally (--local); use dwlrec submit for Kubeflow or Vertex AI"
        )
    params = _params(args)  # every value checked before anything runs
    from pipelines.pipeline import DEFAULT_VARIANTS

    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or task_threads(
        params.get("variants") or DEFAULT_VARIANTS, args.parallelism
    )
    with tempfile.TemporaryDirectory(prefix="dwlrec-spec-") as tmp:
        spec = args.spec
        if spec is None:
            spec = compile_checked(Path(tmp) / "pipeline.yaml", pipeline_config(args, "kubeflow"))
        summary = run_local(
            params=params,
            spec_path=spec,
            runner=args.runner,
            pipeline_root=args.pipeline_root,
            enable_caching=args.cache,
            threads=threads,
            verbose=args.verbose,
        )
    print(json.dumps(summary))
    print(f"report: {summary['report_html']}")


def _submit(args) -> None:
    from pipelines.submit import submit_from_args, target_of, vertex_credentials

    params = _params(args)
    target = target_of(args)
    if target == "vertex" and not args.api_endpoint:
        vertex_credentials()  # before compiling: no credentials is the commonest failure
    with tempfile.TemporaryDirectory(prefix="dwlrec-submit-") as tmp:
        package = args.package
        if package is None:
            package = compile_checked(Path(tmp) / "pipeline.yaml", pipeline_config(args, target))
        elif not Path(package).is_file():
            raise ConfigError(f"--package {package}: no such file")
        summary = submit_from_args(args, package, params)
    print(json.dumps(summary, indent=2))


def build_parser() -> argparse.ArgumentParser:
    from pipelines.submit import add_submit_arguments

    parser = argparse.ArgumentParser(
        prog="dwlrec", description=__doc__, formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    compile_parser = commands.add_parser(
        "compile",
        help="write the pipeline's IR YAML for one target",
        formatter_class=HelpFormatter,
        description="Compile the sparse-domain-dwl pipeline for --target kubeflow or vertex and "
        "check it the way the backend reads it (every input a task uses is declared).",
    )
    compile_parser.add_argument("--output", "-o", default="pipeline.yaml")
    _machine_args(compile_parser, None)
    compile_parser.set_defaults(body=_compile)

    run_parser = commands.add_parser(
        "run",
        help="run a compiled pipeline on this machine (kfp local runners)",
        formatter_class=HelpFormatter,
        description="Execute a compiled pipeline YAML with kfp.local and print where report.html "
        "is. Without --spec it compiles the kubeflow target with --no-gpu into the run folder "
        "and runs that file. Without parameters it runs the embedded synthetic demo.",
    )
    run_parser.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="run with kfp's local runners (the only mode of `run`)",
    )
    run_parser.add_argument("--spec", help="a compiled pipeline YAML to run (dwlrec compile)")
    run_parser.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: tasks in this Python environment; docker: tasks in the spec's image "
        "(docker/build.sh cpu)",
    )
    run_parser.add_argument(
        "--pipeline-root", default="local_outputs", help="where every task's artifacts are written"
    )
    run_parser.add_argument(
        "--verbose", action="store_true", help="stream every task's log (always kept in files)"
    )
    run_parser.add_argument(
        "--cache",
        action="store_true",
        help="reuse outputs of identical earlier local tasks (kfp.local cache; keyed on the "
        "component code and inputs, not the library)",
    )
    _machine_args(run_parser, "kubeflow", gpu=False)
    _param_args(run_parser)
    run_parser.set_defaults(body=_run)

    submit_parser = commands.add_parser(
        "submit",
        help="submit to Vertex AI Pipelines or Kubeflow Pipelines",
        formatter_class=HelpFormatter,
        description="Compile for the target (or take --package) and submit one run. Images must "
        "be pushed to a registry the cluster can pull from: pass them with --image/--cuda-image.",
    )
    add_submit_arguments(submit_parser)
    submit_parser.add_argument(
        "--package", help="a compiled pipeline YAML (default: compile now for the target)"
    )
    _machine_args(submit_parser, "submit")
    _param_args(submit_parser)
    submit_parser.set_defaults(body=_submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dwlrec compile|run|submit`` (argv includes the command)."""
    parser = build_parser()
    return run_cli(lambda args: args.body(args), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
