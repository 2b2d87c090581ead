"""How the train step runs as a pipeline task (SPEC §9): durable checkpoints and torchrun.

``train_task`` is what the KFP component calls inside its container:

- ``checkpoint_root`` set: train in ``checkpoint_dir(checkpoint_root, run_id, variant)`` with
  ``resume=True``, so a retried or pre-empted task continues from ``checkpoints/last.pt`` (a run
  that already finished just rewrites its artifact), then copy ``ARTIFACT_FILES`` to the Model.
  ``gs://bucket/path`` means the gcsfuse mount ``/gcs/bucket/path`` (Vertex AI); on Kubeflow the
  root must be a path on a mounted volume.
- ``nproc`` > 1: ``torch.distributed.run --standalone`` starts N processes of
  ``python -m components.train.launch REQUEST.json`` (gloo on CPU, nccl on GPU) and waits.

Imported inside the component body: no torch at import time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from components.core.model_artifact import ARTIFACT_FILES
from components.errors import ConfigError, DwlrecError
from components.train.cluster_env import detect, torchrun_rendezvous_args

log = logging.getLogger("dwlrec.train")

GCS_MOUNT = "/gcs"  # where Vertex AI mounts Cloud Storage buckets (gcsfuse)
TAIL_LINES = 40  # lines of a failed torchrun's output quoted in the error


class LaunchError(DwlrecError):
    """The torchrun processes of a train task failed."""


def configure_logging() -> None:
    """Make the step's INFO lines (e.g. ``resuming from …``) reach the task log."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
    dwlrec = logging.getLogger("dwlrec")
    if dwlrec.getEffectiveLevel() > logging.INFO:
        dwlrec.setLevel(logging.INFO)


# ---- durable checkpoints ----


def safe_name(text: str) -> str:
    """``text`` as one path component: runs of characters other than ``A-Za-z0-9._-`` → ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


class UnmountedCheckpointRoot(ConfigError):
    """A checkpoint root that is an object-store URL with no file-system mount here."""


def local_checkpoint_root(checkpoint_root: str) -> Path:
    """A local path for ``checkpoint_root``; ``gs://b/p`` → ``/gcs/b/p`` when /gcs is mounted."""
    match = re.match(r"^([a-z][a-z0-9+.-]*)://(.*)$", checkpoint_root)
    if match is None:
        return Path(checkpoint_root)
    scheme, rest = match.groups()
    if scheme == "gs" and Path(GCS_MOUNT).is_dir():
        return Path(GCS_MOUNT) / rest
    raise UnmountedCheckpointRoot(
        f"checkpoint_root {checkpoint_root!r}: "
        + (
            f"no gcsfuse mount at {GCS_MOUNT} (Vertex AI mounts buckets there)"
            if scheme == "gs"
            else f"{scheme}:// is not supported"
        )
        + "; on Kubeflow checkpoint_root must be a path on a volume mounted into the train task "
        "(e.g. a PVC), or '' for no durable checkpoints"
    )


def checkpoint_dir(checkpoint_root: str, run_id: str, variant: str) -> Path:
    """The working dir of one variant's training: ``<checkpoint_root>/<run_id>/<variant>``."""
    if not checkpoint_root:
        raise ConfigError("checkpoint_root is empty: there is no checkpoint dir")
    names = []
    for param, value in (("run_id", run_id), ("variant", variant)):
        names.append(safe_name(value))
        if not names[-1]:
            raise ConfigError(
                f"{param} {value!r}: no usable characters for a checkpoint directory name"
            )
    return local_checkpoint_root(checkpoint_root).joinpath(*names)


def copy_artifact(work_dir: Path, model_dir: str | Path) -> None:
    """Copy the finished Model files from the working dir into the Model artifact dir."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACT_FILES:
        shutil.copyfile(work_dir / name, model_dir / name)


# ---- torchrun ----


def torchrun_prefix(nproc: int, env: Mapping[str, str] | None = None) -> list[str]:
    """``python -m torch.distributed.run`` for ``nproc`` processes on each node; the nodes and
    master come from the cluster's environment (``env``, default ``os.environ``)."""
    rendezvous = detect(os.environ if env is None else env)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_rendezvous_args(rendezvous),
        f"--nproc-per-node={nproc}",
    ]


def run_torchrun(nproc: int, request: dict) -> dict:
    """Run ``trainer.train(**request)`` in ``nproc`` torchrun processes; rank 0's summary.

    Their output is forwarded to stdout; a failure raises LaunchError quoting the processes'
    ``error:`` lines and the last lines of the output.
    """
    with tempfile.TemporaryDirectory(prefix="dwlrec-torchrun-") as tmp:
        request_path = Path(tmp) / "request.json"
        summary_path = Path(tmp) / "summary.json"
        request_path.write_text(json.dumps({**request, "summary_path": str(summary_path)}))
        cmd = [*torchrun_prefix(nproc), "-m", "components.train.launch", str(request_path)]
        print("launching:", " ".join(cmd), flush=True)
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        errors: dict[str, None] = {}  # each process's "error: …" line, once
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # their lines as they come
        ) as proc:
            assert proc.stdout is not None  # stdout=PIPE
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                tail.append(line)
                message = re.sub(r"^\[[^\]]*\]:", "", line).strip()  # torchrun's "[rank0]:"
                if message.startswith("error: "):
                    errors[message] = None
        if proc.returncode != 0:
            raise LaunchError(
                f"torchrun ({nproc} processes) exited with status {proc.returncode}: "
                + " | ".join(errors or ["(no error line)"])
                + "\nits last lines:\n"
                + "".join(tail)
            )
        if not summary_path.exists():  # global rank 0 runs on another node: it has the summary
            return {"node_rank": detect(os.environ).node_rank, "model_written": False}
        return json.loads(summary_path.read_text())


def main(argv: list[str] | None = None) -> int:
    """``python -m components.train.launch REQUEST.json``: one torchrun process's training;
    ``--task REQUEST.json``: ``train_task(**request)``, what each TrainJob node runs."""
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    if argv[:1] == ["--task"]:  # a TrainJob pod (components.train.trainjob): the whole task
        try:
            summary = train_task(**json.loads(Path(argv[1]).read_text()))
        except DwlrecError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 2
        print("train summary:", json.dumps(summary, default=str)[:2000], flush=True)
        return 0
    request = json.loads(Path(argv[0]).read_text())
    summary_path = request.pop("summary_path", None)
    from components.train.trainer import train

    try:
        summary = train(**request)
    except DwlrecError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # the traceback follows; this line is what the task error quotes
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise
    if summary_path and int(os.environ.get("RANK", "0")) == 0:
        Path(summary_path).write_text(json.dumps(summary, default=str))
    return 0


# ---- the task ----

# config.json entries a Model artifact's metadata repeats (shown in the KFP / Vertex UI)
METADATA_KEYS = ("loss", "best_epoch", "epochs_run", "precision", "device", "world_size")


def model_metadata(model_dir: str, spec) -> dict:
    """The Model artifact's metadata: the variant (a ``core.variants`` spec) and its config."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    metadata = {"variant": spec.name, "scheme": spec.scheme, "framework": "pytorch"}
    return {**metadata, **{key: config[key] for key in METADATA_KEYS if key in config}}


def train_task(
    dataset_dir: str,
    weights_path: str,
    model_dir: str,
    *,
    variant: str | dict,
    loss: str,
    epochs: int,
    options: dict,
    device: str = "auto",
    nproc: int = 1,
    checkpoint_root: str = "",
    run_id: str = "",
) -> dict:
    """Train one variant into the Model artifact dir ``model_dir``; returns the summary.

    ``variant``: a scheme name or a named spec (``components.core.variants``). What the variant
    sets wins over ``loss`` and ``options``; the task's scheme, epochs and device win over the
    same keys in ``options``.
    """
    from components.core.devices import resolve_device
    from components.core.variants import parse_variant
    from components.kfp_support import write_artifact_dir
    from components.train.config import split_options
    from components.train.trainer import train

    configure_logging()
    spec = parse_variant(variant, "variant")
    fixed = {"scheme": spec.weighting_scheme, "loss": loss, "epochs": epochs, "device": device}
    ignored = {k: options[k] for k in fixed if k in options and options[k] != fixed[k]}
    if ignored:
        print(f"train: options {ignored} ignored, the task's parameters win: {fixed}", flush=True)
    options = {**options, **fixed, **spec.weighting, **spec.train}
    print(f"train: variant {spec.name}: {spec.describe()}", flush=True)
    if nproc < 1:
        raise ConfigError(f"nproc must be >= 1, got {nproc}")
    split_options(options)  # bad options fail here, not in every torchrun process
    resolve_device(device)  # a requested GPU is there, or the task fails before any I/O

    def produce(out_dir: Path, resume: bool) -> dict:
        request = {
            "dataset_dir": str(dataset_dir),
            "weights_path": str(weights_path),
            "output_dir": str(out_dir),
            "resume": resume,
            **options,
        }
        if nproc == 1 and rendezvous.nnodes == 1:
            return train(**request)
        return run_torchrun(nproc, request)

    rendezvous = detect(os.environ)  # a multi-node job's pods each run this task
    if rendezvous.node_rank > 0:
        # a worker node: its processes train (global rank 0, on node 0, writes every file);
        # it must not write the Model artifact, which node 0's task owns
        print(
            f"train: node {rendezvous.node_rank} of {rendezvous.nnodes} ({rendezvous.source}); "
            "node 0 writes the model",
            flush=True,
        )
        try:  # the shared checkpoint dir (node 0 writes it, every node resumes from it)
            work = checkpoint_dir(checkpoint_root, run_id, spec.name) if checkpoint_root else None
        except UnmountedCheckpointRoot:
            work = None
        if work is not None:
            return {**produce(work, resume=True), "model_written": False}
        with tempfile.TemporaryDirectory(prefix="dwlrec-worker-") as tmp:
            return {**produce(Path(tmp) / "out", resume=False), "model_written": False}
    if not checkpoint_root:
        return write_artifact_dir(model_dir, lambda out_dir: produce(out_dir, resume=False))
    try:
        work_dir = checkpoint_dir(checkpoint_root, run_id, spec.name)
    except UnmountedCheckpointRoot as exc:
        # the pipeline root by default (Kubeflow's minio://): explicit roots are checked when
        # the pipeline is compiled, so this is the default one; say so and train without
        log.warning("%s: durable checkpoints are off, a retry starts over", exc)
        return write_artifact_dir(model_dir, lambda out_dir: produce(out_dir, resume=False))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"train: working dir {work_dir} (resumes from its checkpoints)", flush=True)
    summary = produce(work_dir, resume=True)
    copy_artifact(work_dir, model_dir)
    return summary


if __name__ == "__main__":
    sys.exit(main())
