"""``dwlrec compile|run|submit``: the Kubeflow pipeline from the command line.

dwlrec compile [--output pipeline.yaml] [--image I --cuda-image I] [--no-gpu]
dwlrec run --local [--runner subprocess|docker] [--param NAME=VALUE …]
dwlrec submit --vertex --project P --region R --pipeline-root gs://… [--service-account SA]
dwlrec submit --kfp-host URL [--experiment NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from components.clitools import HelpFormatter, run_cli
from components.errors import ConfigError

log = logging.getLogger("dwlrec.pipeline")

PARAM_HELP = (
    "pipeline parameter NAME=VALUE (repeatable); VALUE is JSON when it parses as JSON, else a "
    'string, e.g. --param epochs=5 --param variants=\'["none","dynamic"]\' '
    "--param ingest_options='{\"num_users\": 300}'"
)


def _image_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", help="CPU image of every step (default $DWLREC_IMAGE or dwlrec:latest)"
    )
    parser.add_argument(
        "--cuda-image",
        help="image of train/evaluate when a GPU is requested "
        "(default $DWLREC_CUDA_IMAGE or dwlrec-cuda:latest)",
    )
    parser.add_argument(
        "--no-gpu", action="store_true", help="train/evaluate request no GPU and run in --image"
    )
    parser.add_argument(
        "--parallelism", type=int, default=0, help="variants trained at the same time (0 = all)"
    )
    parser.add_argument("--no-cache", action="store_true", help="compile with caching off")


def _param_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help=PARAM_HELP
    )
    parser.add_argument(
        "--params-file", help="JSON object of pipeline parameters (--param entries override it)"
    )


def _config(args):
    from components.kfp_support import cpu_image, cuda_image
    from pipelines.pipeline import PipelineConfig

    return PipelineConfig(
        image=args.image or cpu_image(),
        cuda_image=args.cuda_image or cuda_image(),
        gpu=not args.no_gpu,
        parallelism=args.parallelism,
        enable_caching=not args.no_cache,
    )


def _compile(args) -> None:
    from pipelines.pipeline import compile_pipeline

    path = compile_pipeline(args.output, _config(args))
    print(f"wrote {path}")


def _run(args) -> None:
    from pipelines.local import run_local
    from pipelines.params import parse_params

    if not args.local:
        raise ConfigError(
            "dwlrec run only runs locally (--local); use dwlrec submit for Kubeflow or Vertex AI"
        )
    params = parse_params(args.param, args.params_file)
    summary = run_local(
        params=params,
        runner=args.runner,
        pipeline_root=args.pipeline_root,
        image=args.image,
        enable_caching=args.cache,
        parallelism=args.parallelism,
    )
    print(json.dumps(summary))  # one line, after kfp's task logs
    print(f"report: {summary['report_html']}")


def _submit(args) -> None:
    from pipelines.params import parse_params
    from pipelines.pipeline import KUBEFLOW_ACCELERATOR
    from pipelines.submit import submit_kfp, submit_vertex

    if bool(args.vertex) == bool(args.kfp_host):
        raise ConfigError("dwlrec submit: give exactly one of --vertex or --kfp-host URL")
    params = parse_params(args.param, args.params_file)
    with tempfile.TemporaryDirectory(prefix="dwlrec-submit-") as tmp:
        package = args.package
        if package is None:
            from pipelines.pipeline import compile_pipeline

            package = compile_pipeline(str(Path(tmp) / "pipeline.yaml"), _config(args))
        elif not Path(package).is_file():
            raise ConfigError(f"--package {package}: no such file")
        if args.vertex:
            missing = [
                flag
                for flag, value in (
                    ("--project", args.project),
                    ("--region", args.region),
                    ("--pipeline-root", args.pipeline_root),
                )
                if not value
            ]
            if missing:
                raise ConfigError(f"submit --vertex needs {' '.join(missing)}")
            summary = submit_vertex(
                package,
                project=args.project,
                region=args.region,
                pipeline_root=args.pipeline_root,
                params=params,
                service_account=args.service_account,
                display_name=args.display_name,
                experiment=args.experiment,
                api_endpoint=args.api_endpoint,
            )
        else:
            # Kubeflow names GPUs by their Kubernetes resource, Vertex by model name.
            params.setdefault("accelerator_type", KUBEFLOW_ACCELERATOR)
            summary = submit_kfp(
                package,
                host=args.kfp_host,
                params=params,
                experiment=args.experiment,
                run_name=args.display_name,
                namespace=args.namespace,
            )
    print(json.dumps(summary, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dwlrec", description=__doc__, formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    compile_parser = commands.add_parser(
        "compile",
        help="write the pipeline's IR YAML",
        formatter_class=HelpFormatter,
        description="Compile the sparse-domain-dwl pipeline to one IR YAML that Kubeflow "
        "Pipelines and Vertex AI Pipelines run unchanged.",
    )
    compile_parser.add_argument("--output", "-o", default="pipeline.yaml")
    _image_args(compile_parser)
    compile_parser.set_defaults(body=_compile)

    run_parser = commands.add_parser(
        "run",
        help="run the pipeline on this machine (kfp local runners)",
        formatter_class=HelpFormatter,
        description="Run the whole pipeline with kfp.local and print where report.html is. "
        "Without parameters it runs the embedded synthetic demo.",
    )
    run_parser.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="run with kfp's local runners (the only mode of `run`)",
    )
    run_parser.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: tasks in this Python environment; docker: tasks "
        "in the project image (docker/build.sh cpu)",
    )
    run_parser.add_argument(
        "--pipeline-root", default="local_outputs", help="where every task's artifacts are written"
    )
    run_parser.add_argument(
        "--image", help="image for --runner docker (default $DWLREC_IMAGE or dwlrec:latest)"
    )
    run_parser.add_argument(
        "--parallelism", type=int, default=0, help="variants trained at the same time (0 = all)"
    )
    run_parser.add_argument(
        "--cache",
        action="store_true",
        help="reuse outputs of identical earlier local tasks (kfp.local "
        "cache; keyed on the component code and inputs, not the library)",
    )
    _param_args(run_parser)
    run_parser.set_defaults(body=_run)

    submit_parser = commands.add_parser(
        "submit",
        help="submit to Vertex AI Pipelines or Kubeflow Pipelines",
        formatter_class=HelpFormatter,
        description="Compile (or take --package) and submit one run. Images must be pushed to "
        "a registry the cluster can pull from: pass them with --image/--cuda-image.",
    )
    target = submit_parser.add_argument_group("target")
    target.add_argument("--vertex", action="store_true", help="Vertex AI Pipelines")
    target.add_argument("--project", help="Vertex: Google Cloud project")
    target.add_argument("--region", help="Vertex: region, e.g. us-central1")
    target.add_argument("--pipeline-root", help="Vertex: gs://bucket/prefix for artifacts")
    target.add_argument("--service-account", help="Vertex: service account the run uses")
    target.add_argument(
        "--api-endpoint",
        help="Vertex: API endpoint override (private endpoints; http:// means REST)",
    )
    target.add_argument("--kfp-host", help="Kubeflow Pipelines API URL, e.g. http://localhost:8080")
    target.add_argument("--namespace", help="Kubeflow: namespace (multi-user deployments)")
    submit_parser.add_argument("--experiment", help="experiment to file the run under")
    submit_parser.add_argument(
        "--display-name", default="sparse-domain-dwl", help="run/job display name"
    )
    submit_parser.add_argument(
        "--package",
        help="a compiled pipeline YAML (default: compile now with the image options below)",
    )
    _image_args(submit_parser)
    _param_args(submit_parser)
    submit_parser.set_defaults(body=_submit)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dwlrec compile|run|submit`` (argv includes the command)."""
    parser = build_parser()
    return run_cli(lambda args: args.body(args), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
