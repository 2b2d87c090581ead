"""KFP component of the report step: a thin wrapper over ``components.report.report``."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from components.kfp_support import cpu_image


def report(
    evaluations: Input[list[Dataset]],
    baseline: str,
    options: dict,
    report_html: Output[HTML],
    report_md: Output[Markdown],
    report_dir: Output[Dataset],
):
    """Compare every variant's evaluation with ``baseline`` (per-domain lifts, paired CIs).

    ``evaluations`` is the fan-in (``dsl.Collected``) of the evaluate tasks; each carries its
    variant name in its metadata.
    """
    import os

    from components.kfp_support import copy_file, restore_ints, write_artifact_dir
    from components.report import report as run_report

    evals = {}
    for evaluation in evaluations:
        name = evaluation.metadata.get("variant") or os.path.basename(evaluation.path)
        evals[name] = evaluation.path

    def produce(out_dir):
        return run_report(
            evals=evals, baseline=baseline, output_dir=out_dir, **restore_ints(options)
        )

    write_artifact_dir(report_dir.path, produce)
    copy_file(os.path.join(report_dir.path, "report.html"), report_html.path)
    copy_file(os.path.join(report_dir.path, "report.md"), report_md.path)
    report_dir.metadata["variants"] = sorted(evals)
    report_dir.metadata["baseline"] = baseline


def component(image: str | None = None):
    """The report component running in ``image`` (default: ``$DWLREC_IMAGE`` or dwlrec:latest)."""
    return dsl.component(report, base_image=image or cpu_image(), install_kfp_package=False)
