"""One line per task for a local run, and each task's full log in a file (``dwlrec run --local``).

kfp.local streams every task's output (about 1,400 lines for the demo) and its own logging to
stdout. ``TaskLogs`` wraps kfp.local's single-task entry point for the duration of a run: each
task's output goes to ``<run dir>/logs/<task>.log`` (retries append, with an attempt header), and
the terminal gets a start and an end line per task with its variant, seconds and key figure
(rows ingested, best validation NDCG@10, test NDCG@10, the report's path). ``verbose`` also
streams the logs. Tasks of a ParallelFor run in threads, so output is routed per thread.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import sys
import threading
import time
from pathlib import Path


def key_figure(task: str, outputs: dict) -> str:
    """The figure a user looks for in a finished task's outputs ('' when there is none)."""
    try:
        if task == "ingest":
            meta = outputs["dataset"].metadata
            counts = {k: int(meta[k]) for k in ("interactions", "users", "items")}  # kfp: floats
            return "{interactions:,} interactions, {users:,} users, {items:,} items".format(
                **counts
            )
        if task == "train":
            config = json.loads((Path(outputs["model"].path) / "config.json").read_text())
            best = config["best_val"] or {}
            return (
                f"best validation NDCG@10 {best.get('ndcg@10', float('nan')):.4f} "
                f"(epoch {config['best_epoch']} of {config['epochs_run']})"
            )
        if task == "evaluate":
            summary = json.loads((Path(outputs["evaluation"].path) / "metrics.json").read_text())
            summary = summary["summary"]
            return f"test NDCG@10 {summary['ndcg@10']:.4f}, Recall@10 {summary['recall@10']:.4f}"
        if task == "report":
            return str(Path(outputs["report_dir"].path) / "report.html")
    except (KeyError, OSError, ValueError, TypeError):
        return ""
    return ""


class _RouteByThread(logging.Handler):
    """Root-logger handler: a record goes to the log file of the task its thread runs."""

    def __init__(self, owner: TaskLogs) -> None:
        super().__init__()
        self.owner = owner
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # outside a task (kfp's pipeline-level lines), only warnings reach the terminal
        loud = record.levelno >= logging.WARNING
        self.owner.write(self.format(record) + "\n", outside_task=loud)


class TaskLogs:
    """Context manager that routes kfp.local's task output to files and prints task lines."""

    def __init__(self, pipeline_root: str | Path, verbose: bool = False, stream=None) -> None:
        self.pipeline_root = Path(pipeline_root)
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.run_dir: Path | None = None
        self.started = time.perf_counter()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self._saved: list = []

    def logs_dir(self) -> Path:
        return (self.run_dir or self.pipeline_root) / "logs"

    # -- output routing --

    def write(self, text: str, outside_task: bool = True) -> None:
        sink = getattr(self._local, "sink", None)
        if sink is not None:
            sink.write(text)
            sink.flush()
        if self.verbose or (sink is None and outside_task and text.strip()):
            with self._lock:
                self._print(text, end="")

    def _routed_print(self, *args, sep=" ", end="\n", file=None, flush=False) -> None:
        if file not in (None, sys.stdout):
            return self._print(*args, sep=sep, end=end, file=file, flush=flush)
        text = sep.join(str(a) for a in args) + end
        outside = getattr(self._local, "sink", None) is None
        if outside and not self.verbose and not text.strip().strip("-"):
            return None  # kfp's separator lines between tasks
        self.write(text)

    def line(self, text: str) -> None:
        with self._lock:
            elapsed = time.perf_counter() - self.started
            self._print(f"[{elapsed:7.1f}s] {text}", file=self.stream, flush=True)

    # -- kfp.local hook --

    def _run_task(self, original, **kwargs):
        from kfp.local import executor_input_utils, status

        task_name = executor_input_utils.get_local_task_resource_name(kwargs["component_name"])
        task_root = Path(
            executor_input_utils.construct_local_task_root(
                pipeline_root=kwargs["pipeline_root"],
                pipeline_resource_name=kwargs["pipeline_resource_name"],
                task_resource_name=task_name,
            )
        )
        relative = task_root.relative_to(Path(kwargs["pipeline_root"]))
        self.run_dir = self.run_dir or Path(kwargs["pipeline_root"]) / relative.parts[0]
        key = "__".join(relative.parts[1:])
        variant = kwargs["arguments"].get("variant")
        if isinstance(variant, dict):  # an item of the stats task's variant specs
            variant = variant.get("name")
        label = f"{task_name}" + (f" [{variant}]" if variant else "")
        with self._lock:
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        log_path = self.logs_dir() / f"{key}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self.line(f"start {label}{again}")
        t0 = time.perf_counter()
        with open(log_path, "a") as sink:
            sink.write(f"==== {label} attempt {attempt}\n")
            self._local.sink = sink
            try:
                outputs, task_status = original(**kwargs)
            finally:
                self._local.sink = None
        seconds = time.perf_counter() - t0
        if task_status == status.Status.SUCCESS:
            figure = key_figure(task_name, outputs)
            self.line(f"done  {label} in {seconds:.1f}s" + (f": {figure}" if figure else ""))
        else:
            tail = log_path.read_text().splitlines()[-6:]
            self.line(f"FAILED {label} after {seconds:.1f}s; log: {log_path}")
            with self._lock:
                for text in tail:
                    self._print(f"    {text}", file=self.stream)
        return outputs, task_status

    def __enter__(self) -> TaskLogs:
        from kfp.local import task_dispatcher

        original = task_dispatcher.run_single_task_implementation
        self._print = builtins.print
        self._saved = [
            (task_dispatcher, "run_single_task_implementation", original),
            (
                task_dispatcher.logging_utils,
                "local_logger_context",
                task_dispatcher.logging_utils.local_logger_context,
            ),
            (builtins, "print", builtins.print),
        ]
        task_dispatcher.run_single_task_implementation = lambda **kw: self._run_task(original, **kw)
        task_dispatcher.logging_utils.local_logger_context = contextlib.nullcontext
        builtins.print = self._routed_print
        root = logging.getLogger()
        self._handler = _RouteByThread(self)
        self._root_state = (root.level, root.handlers[:])
        root.handlers = [self._handler]
        root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, value in self._saved:
            setattr(owner, name, value)
        root = logging.getLogger()
        root.setLevel(self._root_state[0])
        root.handlers = self._root_state[1]
