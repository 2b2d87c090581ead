"""Structural checks of a compiled pipeline spec, the way a backend reads it (SPEC §9).

``check_spec(spec, config)`` returns every problem found (an empty list = the spec is sound):

- every ``componentInputParameter`` / ``componentInputArtifact`` a DAG task uses is declared by
  the DAG that holds it (the Kubeflow driver fails with "parent DAG does not have input
  parameter" otherwise, Vertex at submission);
- every executor runs the configured image and installs nothing (``install_kfp_package`` off);
- train and evaluate request exactly the accelerator the target needs, and nothing else does.

``dwlrec compile`` runs it on what it wrote, so a broken spec never leaves the machine.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from components.errors import DwlrecError

GPU_STEPS = ("train", "evaluate")


class SpecError(DwlrecError):
    """A compiled spec that a backend would reject."""


def dangling_references(spec: dict) -> list[str]:
    """Inputs a DAG task reads from its parent that the parent does not declare."""
    components = {**spec["components"], "<root>": spec["root"]}
    problems = []
    for name, component in components.items():
        dag = component.get("dag")
        if not dag:
            continue
        declared = component.get("inputDefinitions", {})
        params, artifacts = set(declared.get("parameters", {})), set(declared.get("artifacts", {}))
        for task_name, task in dag["tasks"].items():
            inputs = task.get("inputs", {})
            for value in inputs.get("parameters", {}).values():
                ref = value.get("componentInputParameter")
                if ref and ref not in params:
                    problems.append(f"{name}/{task_name}: parameter {ref!r} is not declared")
            for value in inputs.get("artifacts", {}).values():
                ref = value.get("componentInputArtifact")
                if ref and ref not in artifacts:
                    problems.append(f"{name}/{task_name}: artifact {ref!r} is not declared")
            iterator = task.get("parameterIterator", {}).get("items", {}).get("inputParameter")
            if iterator and iterator not in inputs.get("parameters", {}):
                problems.append(f"{name}/{task_name}: loop items {iterator!r} are not an input")
    return problems


def _step_of(executor_name: str) -> str:
    return executor_name.removeprefix("exec-").split("-")[0]


def executor_problems(spec: dict, config) -> list[str]:
    """Images, pip installs and accelerators of every executor against ``config``."""
    problems = []
    machine = config.machine
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        step = _step_of(name)
        if step == "train" and getattr(config, "distributed_train", 1) > 1:
            from pipelines.distributed import distributed_problems

            problems += distributed_problems(name, container, spec, config)
            continue
        if step == "dataproc" and getattr(config, "ingest_engine", "local") == "spark":
            from pipelines.ingest_spark import dataproc_problems

            problems += dataproc_problems(name, container, spec, config)
            continue
        image = config.step_image if step in GPU_STEPS else config.image
        if container["image"] != image:
            problems.append(f"{name}: image {container['image']!r}, expected {image!r}")
        if "pip install" in " ".join(container.get("command", []) + container.get("args", [])):
            problems.append(f"{name}: installs packages when it starts (install_kfp_package)")
        accelerator = container.get("resources", {}).get("accelerator")
        if step in GPU_STEPS and machine.gpu:
            wanted = {"type": machine.accelerator, "count": str(machine.accelerator_count)}
            found = {
                "type": (accelerator or {}).get("resourceType") or (accelerator or {}).get("type"),
                "count": str(
                    (accelerator or {}).get("resourceCount") or (accelerator or {}).get("count")
                ),
            }
            if found != wanted:
                problems.append(f"{name}: accelerator {found}, expected {wanted}")
        elif accelerator:
            problems.append(f"{name}: requests an accelerator it must not ({accelerator})")
    return problems


def check_spec(spec: dict, config) -> list[str]:
    """Every problem of ``spec`` compiled from ``config`` (a PipelineConfig)."""
    return dangling_references(spec) + executor_problems(spec, config)


def load_spec(path: str | Path) -> dict:
    """The pipeline spec of a compiled YAML (its first document; kfp-kubernetes settings, when
    present, follow as a second document, the platform spec)."""
    return next(yaml.safe_load_all(Path(path).read_text()))


def check_spec_file(path: str | Path, config=None) -> dict:
    """The spec of the YAML at ``path``; SpecError listing its problems. Without ``config`` (a
    spec compiled elsewhere) only what every backend needs is checked: no dangling reference."""
    spec = load_spec(path)
    problems = check_spec(spec, config) if config is not None else dangling_references(spec)
    if problems:
        raise SpecError(f"{path}: the compiled spec would be rejected: " + "; ".join(problems))
    return spec
