"""The train step as a Kubeflow Trainer ``TrainJob`` (SPEC §10): a launcher for multi-node runs.

A pipeline task cannot span machines, so on Kubeflow ``--distributed-train N`` replaces the
train task by a light launcher task that

1. copies its input artifacts (dataset, stats) into the run's working dir on a shared volume
   (the checkpoint PVC, mounted at the same path in the launcher and in every TrainJob pod),
2. writes the train request there and creates a ``TrainJob`` with the ``kubeflow`` SDK
   (``TrainerClient.train``): ``N`` nodes of the project image, the ``torch-distributed``
   runtime, the volume patched into the pods, the command
   ``python -m components.train.launch --task <work>/request.json`` — each pod's ``train_task``
   reads the ``PET_*`` rendezvous the runtime sets and runs torchrun (``cluster_env``),
3. waits for it (streaming node 0's log when the API serves it) and copies the model node 0
   wrote into the launcher's Model artifact. A failed TrainJob fails the task.

The durable checkpoints live in the same working dir, so a retried launcher's new TrainJob
resumes where the last one stopped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.core.model_artifact import ARTIFACT_FILES
from components.errors import ConfigError, DwlrecError
from components.train.launch import checkpoint_dir, copy_artifact

TRAINER_CONTAINER = "node"  # the torch runtime's trainer container (and replicated job)
VOLUME_NAME = "dwlrec-work"
REQUEST_FILE = "request.json"


class TrainJobFailed(DwlrecError):
    """The TrainJob ended Failed, or did not end in time."""


@dataclass(frozen=True)
class TrainJobSpec:
    """What the launcher asks the cluster for (fixed when the pipeline is compiled)."""

    image: str  # the project image the TrainJob pods run
    nodes: int  # TrainJob numNodes
    nproc_per_node: int = 1
    resources_per_node: dict = field(default_factory=dict)  # {"cpu": "6", "memory": "24G", …}
    pvc: str = ""  # the claim holding checkpoint_root (ReadWriteMany: every node mounts it)
    mount_path: str = ""  # where it is mounted (= checkpoint_root)
    runtime: str = "torch-distributed"
    namespace: str = ""  # "" = the launcher pod's own namespace
    timeout_s: int = 7 * 24 * 3600
    poll_s: int = 10

    def validate(self) -> None:
        if self.nodes < 1 or self.nproc_per_node < 1:
            raise ConfigError(f"TrainJob nodes {self.nodes} / processes {self.nproc_per_node}")
        if not self.pvc or not self.mount_path.startswith("/"):
            raise ConfigError(
                "a TrainJob needs a shared volume: --checkpoint-pvc CLAIM and an absolute "
                "--checkpoint-root where it is mounted"
            )
        if self.poll_s < 1 or self.timeout_s <= self.poll_s:
            raise ConfigError(f"TrainJob timeout {self.timeout_s}s must exceed poll {self.poll_s}s")


def job_name(run_id: str, variant: str) -> str:
    """A DNS-1035 name for the TrainJob of (run, variant): stable, so a retry finds its work."""
    text = re.sub(r"[^a-z0-9-]+", "-", f"dwl-{variant}-{run_id}".lower()).strip("-")
    return text[:40].rstrip("-") or "dwl-train"


def stage_inputs(work: Path, dataset_dir: str, stats_dir: str) -> tuple[Path, Path]:
    """Copy the input artifacts onto the shared volume (replacing an earlier copy)."""
    copies = (work / "inputs" / "dataset", work / "inputs" / "stats")
    for src, dst in zip((dataset_dir, stats_dir), copies, strict=True):
        if dst.exists():
            shutil.rmtree(dst)  # ours: a previous attempt's copy of the same artifact
        shutil.copytree(src, dst)
    return copies


def trainjob_options(spec: TrainJobSpec, name: str, request_path: Path) -> list:
    """The ``TrainerClient.train`` options: name, command, and the shared volume in the pods."""
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        Name,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainerCommand,
        TrainingRuntimeSpecPatch,
    )

    pod = PodSpecPatch(
        volumes=[{"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": spec.pvc}}],
        containers=[
            ContainerPatch(
                name=TRAINER_CONTAINER,
                volume_mounts=[{"name": VOLUME_NAME, "mountPath": spec.mount_path}],
            )
        ],
    )
    patch = RuntimePatch(
        training_runtime_spec=TrainingRuntimeSpecPatch(
            template=JobSetTemplatePatch(
                spec=JobSetSpecPatch(
                    replicated_jobs=[
                        ReplicatedJobPatch(
                            name=TRAINER_CONTAINER,
                            template=JobTemplatePatch(
                                spec=JobSpecPatch(template=PodTemplatePatch(spec=pod))
                            ),
                        )
                    ]
                )
            )
        )
    )
    command = ["python", "-m", "components.train.launch", "--task", str(request_path)]
    return [Name(name=name), TrainerCommand(command=command), patch]


def run_trainjob(
    spec: TrainJobSpec,
    dataset_dir: str,
    stats_dir: str,
    model_dir: str,
    *,
    task: dict,
    variant: str,
    run_id: str,
    client_config: dict | None = None,
) -> dict:
    """Train ``task`` (``launch.train_task``'s keyword arguments) in a TrainJob; copy the model
    into ``model_dir``; return node 0's summary. ``client_config``: ``KubernetesBackendConfig``
    keyword arguments (default: in-cluster or ``$KUBECONFIG``)."""
    from kubeflow.trainer import CustomTrainerContainer, KubernetesBackendConfig, TrainerClient

    spec.validate()
    work = checkpoint_dir(spec.mount_path, run_id, variant)  # train_task's working dir
    # beside it, not in it: a step's output never holds its inputs
    work = work.with_name(f"{work.name}.trainjob")
    work.mkdir(parents=True, exist_ok=True)
    dataset_copy, stats_copy = stage_inputs(work, dataset_dir, stats_dir)
    request = {
        **task,
        "dataset_dir": str(dataset_copy),
        "weights_path": str(stats_copy / "weights.json"),
        "model_dir": str(work / "model"),
        "nproc": spec.nproc_per_node,
        "checkpoint_root": spec.mount_path,
        "run_id": run_id,
    }
    request_path = work / REQUEST_FILE
    request_path.write_text(json.dumps(request, indent=2))
    if client_config is None and os.environ.get("KUBECONFIG"):  # else in-cluster config
        client_config = {"config_file": os.environ["KUBECONFIG"]}  # read now, not at import
    backend = {"namespace": spec.namespace or None, **(client_config or {})}
    client = TrainerClient(KubernetesBackendConfig(**backend))
    name, status = reusable_job(client, job_name(run_id, variant))
    if status is None:  # none yet, or the last one failed: a new one resumes from checkpoints
        trainer = CustomTrainerContainer(
            image=spec.image,
            num_nodes=spec.nodes,
            resources_per_node=spec.resources_per_node or None,
        )
        shutil.rmtree(work / "model", ignore_errors=True)  # only node 0's new model lands here
        options = trainjob_options(spec, name, request_path)
        client.train(runtime=spec.runtime, trainer=trainer, options=options)
        print(f"train: created TrainJob {name} ({spec.nodes} nodes of {spec.image})", flush=True)
    else:  # a retried launcher: the job it started is still there
        print(f"train: TrainJob {name} exists ({status}): waiting for it", flush=True)
    wait(client, name, spec)
    if not all((work / "model" / f).is_file() for f in ARTIFACT_FILES):
        raise TrainJobFailed(f"TrainJob {name} completed but {work / 'model'} has no model")
    copy_artifact(work / "model", model_dir)
    return {"trainjob": name, "work_dir": str(work), "nodes": spec.nodes}


def reusable_job(client, base: str, attempts: int = 20) -> tuple[str, str | None]:
    """(name, status) of the TrainJob to wait for — one a killed launcher left running or
    complete — or (a free name, None) after failed ones (``base``, ``base-2``, …)."""
    for attempt in range(1, attempts + 1):
        name = base if attempt == 1 else f"{base[:37]}-{attempt}"
        try:
            status = client.get_job(name).status
        except RuntimeError:  # the SDK's "Failed to get TrainJob": there is none of that name
            return name, None
        if status != "Failed":
            return name, status
    raise TrainJobFailed(f"TrainJob {base}: {attempts} attempts failed; delete them to retry")


def wait(client, name: str, spec: TrainJobSpec) -> None:
    """Until the TrainJob is Complete (TrainJobFailed if Failed or past the timeout)."""
    deadline = time.monotonic() + spec.timeout_s
    status = ""
    while time.monotonic() < deadline:
        job = client.get_job(name)
        if job.status != status:
            status = job.status
            print(f"train: TrainJob {name}: {status}", flush=True)
        if status == "Complete":
            try:  # node 0's log, when its pod is still listed
                for line in client.get_job_logs(name):
                    print(line, flush=True)
            except RuntimeError as exc:
                print(f"train: no log of TrainJob {name}: {exc}", flush=True)
            return
        if status == "Failed":
            raise TrainJobFailed(f"TrainJob {name} failed: see `kubectl logs` of its node pods")
        time.sleep(spec.poll_s)
    raise TrainJobFailed(f"TrainJob {name} did not complete within {spec.timeout_s} s")
