"""Compile targets and machine settings (SPEC §9): what each backend needs, fixed at compile time.

Machine settings are literals in the compiled spec, never pipeline parameters: kfp 2.17 drops
parameter channels fed to resource setters inside a ``ParallelFor`` (the spec then references
inputs its loop DAG does not declare, and the backend rejects it). Literals also work on old and
new backends alike (kfp writes both the legacy and the new resource fields for them).

- ``vertex``: the accelerator is a Vertex AI enum name (``NVIDIA_L4``); CPU and memory drive the
  machine type Vertex picks for the task.
- ``kubeflow``: the accelerator is a Kubernetes extended resource (``nvidia.com/gpu``); node
  selectors, tolerations and pod timeouts go into the spec through kfp-kubernetes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from components.errors import ConfigError
from components.options import Checked

TARGETS = ("kubeflow", "vertex")
DEFAULT_ACCELERATOR = {"vertex": "NVIDIA_L4", "kubeflow": "nvidia.com/gpu"}
# The NVIDIA accelerators Vertex AI custom training accepts (AcceleratorType enum).
VERTEX_ACCELERATORS = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_P100",
    "NVIDIA_L4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_K8S_RESOURCE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
)
_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(\.\d+)?(E|P|T|G|M|K|Ei|Pi|Ti|Gi|Mi|Ki)?$")


@dataclass(frozen=True)
class Toleration:
    key: str
    value: str | None
    effect: str

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """``KEY[=VALUE]:EFFECT``, e.g. ``nvidia.com/gpu:NoSchedule`` or ``pool=gpu:NoExecute``."""
        spec, sep, effect = text.rpartition(":")
        key, _, value = spec.partition("=")
        if not sep or not key or effect not in TAINT_EFFECTS:
            raise ConfigError(
                f"--toleration {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT one of "
                f"{list(TAINT_EFFECTS)}"
            )
        return cls(key=key, value=value or None, effect=effect)


def parse_node_selector(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings → a node-selector dict."""
    selector = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"--node-selector {pair!r}: expected KEY=VALUE")
        selector[key] = value
    return selector


@dataclass
class MachineConfig(Checked):
    """What the train and evaluate tasks request (requests = limits: a Guaranteed pod that fits
    an ordinary 8-vCPU / 32 GB GPU node, e.g. GKE g2-standard-8 or Vertex's L4 machines)."""

    target: str = "kubeflow"
    gpu: bool = True
    accelerator: str = ""  # "" = the target's default (DEFAULT_ACCELERATOR)
    accelerator_count: int = 1  # GPUs per task; > 1 runs torchrun inside the container
    cpu: str = "6"
    memory: str = "24G"
    node_selector: dict[str, str] = field(default_factory=dict)  # kubeflow only
    tolerations: list[Toleration] = field(default_factory=list)  # kubeflow only
    timeout_s: int = 0  # kubeflow: pod active deadline of train/evaluate; 0 = none

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"--target {self.target!r}: expected one of {list(TARGETS)}")
        self.accelerator = self.accelerator or DEFAULT_ACCELERATOR[self.target]
        if self.target == "vertex" and self.accelerator not in VERTEX_ACCELERATORS:
            raise ConfigError(
                f"--accelerator {self.accelerator!r}: Vertex AI expects one of "
                f"{list(VERTEX_ACCELERATORS)}"
            )
        if self.target == "kubeflow" and not _K8S_RESOURCE.match(self.accelerator):
            raise ConfigError(
                f"--accelerator {self.accelerator!r}: Kubeflow expects a Kubernetes resource "
                "name such as nvidia.com/gpu"
            )
        if not isinstance(self.accelerator_count, int) or self.accelerator_count < 1:
            raise ConfigError(f"--accelerator-count must be >= 1, got {self.accelerator_count}")
        if not _CPU.match(self.cpu):
            raise ConfigError(f"--cpu {self.cpu!r}: expected a number of CPUs like 6, 7.5 or 500m")
        if not _MEMORY.match(self.memory):
            raise ConfigError(f"--memory {self.memory!r}: expected a size like 24G or 16Gi")
        if self.timeout_s < 0:
            raise ConfigError(f"--task-timeout must be >= 0 seconds, got {self.timeout_s}")
        if self.target == "vertex" and (self.node_selector or self.tolerations or self.timeout_s):
            raise ConfigError(
                "--node-selector, --toleration and --task-timeout apply to --target kubeflow "
                "only (Vertex AI picks the machine from --accelerator, --cpu and --memory)"
            )

    @property
    def device(self) -> str:
        """The torch device train and evaluate must use: a requested GPU is used or fails."""
        return "cuda" if self.gpu else "cpu"

    @property
    def processes(self) -> int:
        """Training processes per task (torchrun --nproc-per-node)."""
        return self.accelerator_count if self.gpu else 1


def request_machine(task, machine: MachineConfig):
    """Give a train/evaluate ``task`` its CPU, memory, GPU and (kubeflow) scheduling settings."""
    task.set_cpu_request(machine.cpu).set_cpu_limit(machine.cpu)
    task.set_memory_request(machine.memory).set_memory_limit(machine.memory)
    if machine.gpu:
        task.set_accelerator_type(machine.accelerator)
        task.set_accelerator_limit(machine.accelerator_count)
    if machine.target == "kubeflow":
        from kfp import kubernetes

        for key, value in machine.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in machine.tolerations:
            kubernetes.add_toleration(
                task,
                key=toleration.key,
                operator="Equal" if toleration.value else "Exists",
                value=toleration.value,
                effect=toleration.effect,
            )
        if machine.timeout_s:
            kubernetes.set_timeout(task, machine.timeout_s)
    return task
