"""KFP component of the train step: a thin wrapper over ``components.train.train``."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.kfp_support import cuda_image


def train(
    dataset: Input[Dataset],
    stats: Input[Dataset],
    variant: str,
    loss: str,
    epochs: int,
    options: dict,
    model: Output[Model],
):
    """Train one weighting ``variant`` (none|fixed|inverse|dynamic) with ``loss``; ``options`` =
    further ``train`` keyword arguments (model size, batch size, learning rate, seed…)."""
    import json
    import os

    from components.kfp_support import restore_ints, write_artifact_dir
    from components.train import train as run_train

    def produce(out_dir):
        return run_train(
            dataset_dir=dataset.path,
            weights_path=os.path.join(stats.path, "weights.json"),
            output_dir=out_dir,
            scheme=variant,
            loss=loss,
            epochs=epochs,
            **{"device": "auto", **restore_ints(options)},
        )

    summary = write_artifact_dir(model.path, produce)
    model.metadata["variant"] = variant
    model.metadata["loss"] = loss
    model.metadata["framework"] = "pytorch"
    with open(os.path.join(model.path, "config.json")) as handle:
        config = json.load(handle)
    for key in ("best_epoch", "epochs_run"):
        if key in config:
            model.metadata[key] = config[key]
    print("train summary:", json.dumps(summary, default=str)[:2000])


def component(image: str | None = None):
    """The train component running in ``image`` (default: ``$DWLREC_CUDA_IMAGE``)."""
    return dsl.component(train, base_image=image or cuda_image(), install_kfp_package=False)
