"""Run the pipeline on this machine with kfp's local runners (``dwlrec run --local``).

- ``subprocess``: every task runs in the current Python environment (the project installed),
  no Docker needed.
- ``docker``: every task runs in the project image (``docker/build.sh cpu``), exactly the code
  a cluster runs. The image must exist locally (kfp would otherwise try to pull it); tasks run
  as the invoking user so the outputs under ``pipeline_root`` are yours, with no network.

Resource and GPU requests are compiled out (``gpu=False``): the local runners ignore them.
"""

from __future__ import annotations

import builtins
import logging
import os
import time
import warnings
from pathlib import Path

from components.errors import ConfigError, DwlrecError
from components.kfp_support import cpu_image
from pipelines.pipeline import PipelineConfig, build_pipeline

log = logging.getLogger("dwlrec.pipeline")

RUNNERS = ("subprocess", "docker")


def task_threads(params: dict, parallelism: int) -> int:
    """CPU threads per task so that the variants trained side by side share the cores instead
    of oversubscribing them (3 OpenMP pools on 2 cores made training ~15x slower, measured)."""
    from pipelines.pipeline import DEFAULT_VARIANTS

    concurrent = len(params.get("variants") or DEFAULT_VARIANTS)
    if parallelism > 0:
        concurrent = min(concurrent, parallelism)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, concurrent))


def make_runner(runner: str, image: str, threads: int):
    from kfp import local

    if runner == "subprocess":
        return local.SubprocessRunner(use_venv=False)  # tasks inherit OMP_NUM_THREADS
    if runner == "docker":
        _check_image(image)
        run_args = {"network_mode": "none", "environment": {"OMP_NUM_THREADS": str(threads)}}
        if hasattr(os, "getuid"):
            run_args["user"] = f"{os.getuid()}:{os.getgid()}"
        return local.DockerRunner(**run_args)
    raise ConfigError(f"--runner {runner!r}: expected one of {list(RUNNERS)}")


def _check_image(image: str) -> None:
    """Fail clearly (instead of a Docker Hub pull that hangs offline) when ``image`` is absent."""
    try:
        import docker

        client = docker.from_env()
        client.images.get(image)
    except ImportError as exc:
        raise ConfigError("--runner docker needs the docker Python package") from exc
    except Exception as exc:  # docker.errors.ImageNotFound, DockerException (no daemon)
        raise ConfigError(
            f"--runner docker: image {image!r} is not available locally "
            f"({type(exc).__name__}: {exc}); build it with docker/build.sh cpu "
            "or pass --image"
        ) from exc


def run_local(
    params: dict | None = None,
    runner: str = "subprocess",
    pipeline_root: str | Path = "local_outputs",
    image: str | None = None,
    enable_caching: bool = False,
    parallelism: int = 0,
) -> dict:
    """Run the whole pipeline locally; return where the report landed and the run's timing."""
    from kfp import local

    image = image or cpu_image()
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    params = dict(params or {})
    threads = int(os.environ.get("OMP_NUM_THREADS") or task_threads(params, parallelism))
    local.init(
        runner=make_runner(runner, image, threads),
        pipeline_root=str(pipeline_root),
        enable_caching=enable_caching,
        raise_on_error=True,
    )
    config = PipelineConfig(
        image=image,
        cuda_image=image,
        gpu=False,
        parallelism=parallelism,
        enable_caching=enable_caching,
        resource_limits=False,
    )
    pipeline = build_pipeline(config)
    started = time.perf_counter()
    # kfp.local indents task logs by swapping builtins.print; with ParallelFor threads the swap
    # can leak past the run, so put the real print back afterwards.
    original_print = builtins.print
    saved_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with warnings.catch_warnings():
            # "custom or non-Python base image": expected, the project is installed right here.
            warnings.filterwarnings(
                "ignore", message="You may be attemping to run a task", category=RuntimeWarning
            )
            run = pipeline(**params)
    except RuntimeError as exc:  # kfp.local raises RuntimeError when a task fails
        raise DwlrecError(f"local pipeline run failed: {exc}") from exc
    finally:
        builtins.print = original_print
        if saved_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_threads
    seconds = time.perf_counter() - started
    report_html = Path(run.outputs["report_html"].path)
    return {
        "runner": runner,
        "threads_per_task": threads,
        "seconds": round(seconds, 1),
        "pipeline_root": str(pipeline_root),
        "run_dir": str(report_html.parent.parent),
        "report_html": str(report_html),
        "report_md": run.outputs["report_md"].path,
    }
