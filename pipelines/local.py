"""Run a compiled pipeline YAML on this machine with kfp's local runners (``dwlrec run --local``).

The file executed is a compiled spec (``--spec F``, or the kubeflow target compiled with
``--no-gpu`` into the run's folder): ``kfp.components.load_component_from_file`` loads it and
kfp.local runs it, so a local run exercises the very file a user submits to a cluster.

- ``subprocess``: every task runs in the current Python environment (the project installed).
- ``docker``: every task runs in the image the spec names (``docker/build.sh cpu``); the image
  must exist locally (kfp would otherwise try to pull it); tasks run as the invoking user so the
  outputs under ``pipeline_root`` are yours, with no network.

By default one line per task is printed as it starts and ends (variant, seconds, its key figure)
and each task's full log goes to ``<run dir>/logs/``; ``verbose`` streams the logs too.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

from components.errors import ConfigError, DwlrecError
from pipelines.task_log import TaskLogs

log = logging.getLogger("dwlrec.pipeline")

RUNNERS = ("subprocess", "docker")
KFP_LOCAL_MAX_PARALLEL = 2  # kfp.local runs at most 2 ParallelFor iterations at once (2.17)
SPEC_NAME = "pipeline.yaml"


def task_threads(variants: list, parallelism: int) -> int:
    """CPU threads per task so that the variants trained side by side share the cores instead
    of oversubscribing them (3 OpenMP pools on 2 cores made training ~15x slower, measured)."""
    concurrent = min(len(variants) or 1, KFP_LOCAL_MAX_PARALLEL)
    if parallelism > 0:
        concurrent = min(concurrent, parallelism)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, concurrent))


def make_runner(runner: str, images: set[str], threads: int):
    from kfp import local

    if runner == "subprocess":
        return local.SubprocessRunner(use_venv=False)  # tasks inherit OMP_NUM_THREADS
    if runner == "docker":
        for image in sorted(images):
            _check_image(image)
        run_args = {"network_mode": "none", "environment": {"OMP_NUM_THREADS": str(threads)}}
        if hasattr(os, "getuid"):
            run_args["user"] = f"{os.getuid()}:{os.getgid()}"
        return local.DockerRunner(**run_args)
    raise ConfigError(f"--runner {runner!r}: expected one of {list(RUNNERS)}")


def _check_image(image: str) -> None:
    """Fail clearly (instead of a Docker Hub pull that hangs offline) when ``image`` is absent."""
    try:
        import docker.errors

        import docker

        docker.from_env().images.get(image)  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError("--runner docker needs the docker Python package") from exc
    except docker.errors.DockerException as exc:
        if not isinstance(exc, docker.errors.ImageNotFound):
            raise ConfigError(
                f"--runner docker: no Docker daemon answers ({exc}); start dockerd or use "
                "--runner subprocess"
            ) from exc
        raise ConfigError(
            f"--runner docker: image {image!r} is not available locally; build it with "
            "docker/build.sh cpu or compile the spec with --image"
        ) from exc
    except Exception as exc:  # docker.errors.ImageNotFound, DockerException (no daemon)
        raise ConfigError(
            f"--runner docker: image {image!r} is not available locally "
            f"({type(exc).__name__}: {exc}); build it with docker/build.sh cpu "
            "or compile the spec with --image"
        ) from exc


def check_local_spec(spec_path: str | Path) -> set[str]:
    """The images of a spec this machine can run; a spec that requests a GPU cannot run here
    without one (its train task would fail: device=cuda)."""
    from pipelines.spec_check import check_spec_file

    if not Path(spec_path).is_file():
        raise ConfigError(f"--spec {spec_path}: no such file")
    executors = check_spec_file(spec_path)["deploymentSpec"]["executors"]
    gpu = [
        n for n, e in executors.items() if e["container"].get("resources", {}).get("accelerator")
    ]
    if gpu:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"--spec {spec_path}: {', '.join(sorted(gpu))} request a GPU and this machine "
                "has none; compile with --no-gpu for a local run"
            )
    return {e["container"]["image"] for e in executors.values()}


def writable_root(pipeline_root: str | Path) -> Path:
    """``pipeline_root`` created if needed, and writable, or a clear error before any task."""
    root = Path(pipeline_root).resolve()
    if "://" in str(pipeline_root):
        raise ConfigError(
            f"--pipeline-root {pipeline_root}: a local run writes to a local directory "
            "(kfp.local does not support object stores)"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--pipeline-root {root}: cannot create it ({exc.strerror})") from exc
    if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"--pipeline-root {root}: not a writable directory")
    return root


def run_local(
    params: dict,
    spec_path: str | Path,
    runner: str = "subprocess",
    pipeline_root: str | Path = "local_outputs",
    enable_caching: bool = False,
    threads: int = 1,
    verbose: bool = False,
) -> dict:
    """Run the compiled spec at ``spec_path`` with ``params``; return where the report landed."""
    from kfp import components, local

    images = check_local_spec(spec_path)
    pipeline_root = writable_root(pipeline_root)
    local.init(
        runner=make_runner(runner, images, threads),
        pipeline_root=str(pipeline_root),
        enable_caching=enable_caching,
        raise_on_error=True,
    )
    pipeline = components.load_component_from_file(str(spec_path))
    task_logs = TaskLogs(pipeline_root, verbose=verbose)
    started = time.perf_counter()
    original_print = builtins.print
    saved_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        with warnings.catch_warnings(), task_logs:
            # "custom or non-Python base image": expected, the project is installed right here.
            warnings.filterwarnings(
                "ignore", message="You may be attemping to run a task", category=RuntimeWarning
            )
            # resources are compile-time literals for clusters; kfp.local ignores them
            warnings.filterwarnings("ignore", message=".*have no effect in the current local")
            run = pipeline(**params)
    except RuntimeError as exc:  # kfp.local raises RuntimeError when a task fails
        raise DwlrecError(
            f"local pipeline run failed: {exc}; task logs in {task_logs.logs_dir()}"
        ) from exc
    finally:
        # kfp.local indents task logs by swapping builtins.print; with ParallelFor threads the
        # swap can leak past the run, so put the real print back.
        builtins.print = original_print
        if saved_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved_threads
        if task_logs.run_dir is not None:
            shutil.copyfile(spec_path, task_logs.run_dir / SPEC_NAME)
    seconds = time.perf_counter() - started
    if task_logs.run_dir is None:
        raise DwlrecError("local pipeline run executed no task")
    report_html = Path(run.outputs["report"].path) / "report.html"
    return {
        "runner": runner,
        "threads_per_task": threads,
        "seconds": round(seconds, 1),
        "spec": str(task_logs.run_dir / SPEC_NAME),
        "pipeline_root": str(pipeline_root),
        "run_dir": str(task_logs.run_dir),
        "logs": str(task_logs.logs_dir()),
        "report_html": str(report_html),
        "report_md": run.outputs["report_md"].path,
        "metrics": dict(run.outputs["metrics"].metadata),
    }
