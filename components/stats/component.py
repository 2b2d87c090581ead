"""KFP component of the stats step: a thin wrapper over ``components.stats.compute_stats``."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Output

from components.kfp_support import cpu_image


def stats(
    dataset: Input[Dataset],
    fixed_domains: list,
    options: dict,
    variants: list,
    domain_stats: Output[Dataset],
    summary: Output[HTML],
) -> list:
    """Domain sparsity statistics and every scheme's target weights (``weights.json``).

    ``fixed_domains`` = the `fixed` scheme's boosted domains ([] = the step's default);
    ``options`` = further ``compute_stats`` keyword arguments (e.g. ``{"gamma": 0.5}``).
    ``variants``: the run's variants (scheme names or named specs), checked before any work and
    returned (the task's ``Output``: kfp.local iterates only over outputs of that name) as one
    JSON object each, the items the train and evaluate tasks run over.
    """
    import os

    from components.core.variants import parse_variants
    from components.kfp_support import copy_file, restore_ints, write_artifact_dir
    from components.stats import compute_stats

    specs = [v.as_item() for v in parse_variants(restore_ints(variants))]

    def produce(out_dir):
        return compute_stats(
            dataset_dir=dataset.path,
            output_dir=out_dir,
            fixed_domains=list(fixed_domains) or None,
            **restore_ints(options),
        )

    write_artifact_dir(domain_stats.path, produce)
    copy_file(os.path.join(domain_stats.path, "report.html"), summary.path)
    return specs


def component(image: str | None = None):
    """The stats component running in ``image`` (default: ``$DWLREC_IMAGE`` or dwlrec:latest)."""
    return dsl.component(stats, base_image=image or cpu_image(), install_kfp_package=False)
