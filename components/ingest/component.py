"""KFP component of the ingest step: a thin wrapper over ``components.ingest.ingest``.

The body runs inside the project image (``base_image``), so it only imports the installed
package; nothing is pip-installed when the task starts.
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.kfp_support import cpu_image


def ingest(source: str, input_uri: str, options: dict, dataset: Output[Dataset]):
    """Ingest ``source`` (``input_uri`` for file sources; ``options`` = the CLI's options as a
    dict, e.g. ``{"num_users": 300}``) into the Dataset artifact directory."""
    from components.ingest import ingest as run_ingest
    from components.kfp_support import restore_ints, write_artifact_dir

    def produce(out_dir):
        return run_ingest(
            source=source, input_uri=input_uri or None, output_dir=out_dir, **restore_ints(options)
        )

    manifest = write_artifact_dir(dataset.path, produce)
    dataset.metadata["source"] = source
    dataset.metadata.update({k: int(v) for k, v in manifest["counts"].items()})


def component(image: str | None = None):
    """The ingest component running in ``image`` (default: ``$DWLREC_IMAGE`` or dwlrec:latest)."""
    return dsl.component(ingest, base_image=image or cpu_image(), install_kfp_package=False)
