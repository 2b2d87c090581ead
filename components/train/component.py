"""KFP component of the train step: a thin wrapper over ``components.train.launch.train_task``."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.kfp_support import cpu_image, cuda_image


def train(
    dataset: Input[Dataset],
    stats: Input[Dataset],
    variant: dict,
    loss: str,
    epochs: int,
    exclude_seen: bool,
    options: dict,
    device: str,
    nproc: int,
    checkpoint_root: str,
    run_id: str,
    model: Output[Model],
):
    """Train one ``variant`` (an item of the stats task's output: name, scheme, and the
    weighting parameters and train options it sets) with ``loss`` unless it sets its own.

    ``exclude_seen``: the run's protocol (validation ranks without the user's history).
    ``options``: further ``train`` keyword arguments (model size, batch size, learning rate,
    seed…); ``device`` (cpu|cuda|auto, fixed when the pipeline is compiled) wins over theirs.
    ``nproc`` > 1: DDP over that many torchrun processes on this node. ``checkpoint_root`` ≠ '':
    train in ``<checkpoint_root>/<run_id>/<variant name>`` and resume from its checkpoints, so that a
    retried task continues (``gs://…`` = Vertex's /gcs mount; on Kubeflow a mounted volume).
    """
    import json
    import os

    from components.core.variants import parse_variant
    from components.kfp_support import restore_ints
    from components.train.launch import model_metadata, train_task

    spec = parse_variant(restore_ints(variant), "variant")

    summary = train_task(
        dataset.path,
        os.path.join(stats.path, "weights.json"),
        model.path,
        variant=spec.as_item(),
        loss=loss,
        epochs=epochs,
        options={**restore_ints(options), "exclude_seen": exclude_seen},
        device=device,
        nproc=nproc,
        checkpoint_root=checkpoint_root,
        run_id=run_id,
    )
    if summary.get("model_written") is False:  # a multi-node job's worker node
        print("train summary (worker node):", json.dumps(summary, default=str))
        return
    model.metadata.update(model_metadata(model.path, spec))
    print("train summary:", json.dumps(summary, default=str)[:2000])


def component(image: str | None = None):
    """The train component running in ``image`` (default: ``$DWLREC_CUDA_IMAGE``)."""
    return dsl.component(train, base_image=image or cuda_image(), install_kfp_package=False)


def train_trainjob(
    dataset: Input[Dataset],
    stats: Input[Dataset],
    variant: dict,
    loss: str,
    epochs: int,
    exclude_seen: bool,
    options: dict,
    device: str,
    run_id: str,
    trainjob: dict,
    model: Output[Model],
):
    """Train one ``variant`` as a multi-node Kubeflow Trainer TrainJob and wait for it
    (``components.train.trainjob``). ``trainjob``: the TrainJobSpec fields fixed when the
    pipeline was compiled (image, nodes, processes and resources per node, the shared PVC and
    its mount path = the checkpoint root, runtime). The other parameters are ``train``'s."""
    import json

    from components.core.variants import parse_variant
    from components.kfp_support import restore_ints
    from components.train.launch import model_metadata
    from components.train.trainjob import TrainJobSpec, run_trainjob

    spec = parse_variant(restore_ints(variant), "variant")
    summary = run_trainjob(
        TrainJobSpec(**restore_ints(trainjob)),
        dataset.path,
        stats.path,
        model.path,
        task={
            "variant": spec.as_item(),
            "loss": loss,
            "epochs": epochs,
            "options": {**restore_ints(options), "exclude_seen": exclude_seen},
            "device": device,
        },
        variant=spec.name,
        run_id=run_id,
    )
    model.metadata.update(model_metadata(model.path, spec))
    print("train summary:", json.dumps(summary, default=str))


def trainjob_component(image: str | None = None):
    """The TrainJob launcher component (light: it runs in the CPU image, default $DWLREC_IMAGE)."""
    return dsl.component(train_trainjob, base_image=image or cpu_image(), install_kfp_package=False)
