"""Multi-node train tasks (SPEC §10): ``dwlrec compile --distributed-train N``.

A pipeline task is one pod, so N > 1 nodes per train task hands training to the platform's own
distributed engine, each node running ``machine.processes`` torchrun processes:

- ``vertex``: the train component wrapped by google-cloud-pipeline-components'
  ``create_custom_training_job_from_component`` — a Vertex AI custom job with worker pools
  (workerpool0: 1 chief, workerpool1: N-1 workers) on ``--machine-type`` machines. Every
  replica runs the train component; ``cluster_env`` reads its ``CLUSTER_SPEC`` and only the
  chief writes the Model (a worker's task leaves it alone).
- ``kubeflow``: a light launcher task (``components.train.trainjob``) that creates a Kubeflow
  Trainer ``TrainJob`` of N nodes and waits for it; inputs, checkpoints and the model pass
  through the shared checkpoint volume (``--checkpoint-pvc``, ReadWriteMany).

Cluster images must be pullable and unambiguous: a registry host and a tag other than
``latest`` (caches and retries key on the tag; tag with the version and the git revision).
"""

from __future__ import annotations

import re

from components.errors import ConfigError

# Vertex machine types with 1, 2, 4 or 8 GPUs of each type (the usual shapes; any other:
# --machine-type). CPU nodes: DEFAULT_CPU_MACHINE.
VERTEX_MACHINES = {
    "NVIDIA_L4": {
        1: "g2-standard-8",
        2: "g2-standard-24",
        4: "g2-standard-48",
        8: "g2-standard-96",
    },
    "NVIDIA_TESLA_T4": {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"},
    "NVIDIA_TESLA_V100": {1: "n1-standard-8", 2: "n1-standard-16", 4: "n1-standard-32"},
    "NVIDIA_TESLA_A100": {n: f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)},
    "NVIDIA_A100_80GB": {n: f"a2-ultragpu-{n}g" for n in (1, 2, 4, 8)},
    "NVIDIA_H100_80GB": {n: f"a3-highgpu-{n}g" for n in (1, 2, 4, 8)},
    "NVIDIA_H200_141GB": {8: "a3-ultragpu-8g"},
}
DEFAULT_CPU_MACHINE = "n2-standard-8"
_REGISTRY_HOST = re.compile(r"^(localhost(:\d+)?|[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?)$")


def check_cluster_image(flag: str, image: str) -> None:
    """ConfigError unless ``image`` names a registry host and a fixed tag (or a digest)."""
    name, _, digest = image.partition("@")
    host = name.split("/", 1)[0] if "/" in name else ""
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not _REGISTRY_HOST.match(host) or not (digest or (tag and tag != "latest")):
        raise ConfigError(
            f"{flag} {image!r}: a cluster pulls it on every node: give REGISTRY/NAME:TAG with a "
            "fixed tag (e.g. europe-docker.pkg.dev/p/r/dwlrec:0.1.0-<git rev>), not :latest or "
            "a name without a registry (--image/--cuda-image)"
        )


def vertex_machine_type(config) -> str:
    """The machine type of each custom-job replica."""
    machine = config.machine
    if config.machine_type:
        return config.machine_type
    if not machine.gpu:
        return DEFAULT_CPU_MACHINE
    shapes = VERTEX_MACHINES.get(machine.accelerator, {})
    if machine.accelerator_count not in shapes:
        raise ConfigError(
            f"--machine-type: no default for {machine.accelerator_count} x "
            f"{machine.accelerator} (known: {shapes or 'none'}); give the Vertex machine type"
        )
    return shapes[machine.accelerator_count]


def check_distributed(config) -> None:
    """The ``--distributed-train`` settings of a PipelineConfig, before anything compiles."""
    nodes, target = config.distributed_train, config.machine.target
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"--distributed-train {nodes!r}: expected a number of nodes >= 1")
    if nodes == 1:
        if config.machine_type:
            raise ConfigError("--machine-type applies to --target vertex --distributed-train N>1")
        return
    check_cluster_image("--cuda-image" if config.machine.gpu else "--image", config.step_image)
    if target == "vertex":
        try:
            import google_cloud_pipeline_components  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "--target vertex --distributed-train needs google-cloud-pipeline-components: "
                "pip install 'dwlrec[vertex]'"
            ) from exc
        vertex_machine_type(config)
    else:
        if config.machine_type:
            raise ConfigError("--machine-type applies to --target vertex only")
        check_cluster_image("--image", config.image)  # the launcher task's
        if not config.checkpoint_pvc:
            raise ConfigError(
                "--target kubeflow --distributed-train needs --checkpoint-pvc CLAIM (ReadWriteMany) "
                "and --checkpoint-root PATH: the TrainJob's nodes read the inputs and write the "
                "model and checkpoints there"
            )


def train_op_for(config):
    """The train task's component: the plain one, or its multi-node form for the target."""
    from components.train import component as train_component

    nodes, machine = config.distributed_train, config.machine
    if nodes == 1:
        return train_component.component(config.step_image)
    if machine.target == "kubeflow":
        return train_component.trainjob_component(config.image)
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    return create_custom_training_job_from_component(
        train_component.component(config.step_image),
        display_name="train",
        replica_count=nodes,
        machine_type=vertex_machine_type(config),
        accelerator_type=machine.accelerator if machine.gpu else "",
        accelerator_count=machine.accelerator_count if machine.gpu else 0,
    )


def train_task_params(config, checkpoint_root: str) -> dict:
    """The train task's parameters that differ between the plain and the multi-node forms."""
    machine = config.machine
    if config.distributed_train == 1 or machine.target == "vertex":
        return {"nproc": machine.processes, "checkpoint_root": checkpoint_root}
    resources = {"cpu": machine.cpu, "memory": machine.memory}
    if machine.gpu:
        resources[machine.accelerator] = machine.accelerator_count
    return {
        "trainjob": {
            "image": config.step_image,
            "nodes": config.distributed_train,
            "nproc_per_node": machine.processes,
            "resources_per_node": resources,
            "pvc": config.checkpoint_pvc,
            "mount_path": config.checkpoint_root,
            "runtime": config.trainjob_runtime,
        }
    }


def _worker_pools(spec: dict) -> list[dict]:
    """The worker pool specs of the custom-job train component (its input's default)."""
    component = spec["components"]["comp-train"]
    pools = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    return list(pools)


def distributed_problems(name: str, container: dict, spec: dict, config) -> list[str]:
    """What ``spec_check`` checks of a multi-node train executor instead of the plain one."""
    problems = []
    machine, nodes = config.machine, config.distributed_train
    if container.get("resources", {}).get("accelerator"):
        problems.append(f"{name}: the launcher task must not request an accelerator")
    if machine.target == "kubeflow":
        if container["image"] != config.image:
            problems.append(f"{name}: image {container['image']!r}, expected {config.image!r}")
        return problems
    if "google-cloud-pipeline-components" not in container["image"]:
        problems.append(f"{name}: image {container['image']!r} is not the custom-job launcher")
    pools = _worker_pools(spec)
    replicas = sum(int(pool["replica_count"]) for pool in pools)
    if replicas != nodes:
        problems.append(f"{name}: worker pools hold {replicas} replicas, expected {nodes}")
    for pool in pools:
        image = pool["container_spec"]["image_uri"]
        if image != config.step_image:
            problems.append(f"{name}: worker pool image {image!r}, expected {config.step_image!r}")
        spec_ = pool["machine_spec"]
        if machine.gpu and (
            spec_.get("accelerator_type") != machine.accelerator
            or int(spec_.get("accelerator_count", 0)) != machine.accelerator_count
        ):
            problems.append(f"{name}: worker pool accelerator {spec_}, expected {machine}")
    return problems
