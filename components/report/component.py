"""KFP component of the report step: a thin wrapper over ``components.report.report``."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.kfp_support import cpu_image


def evaluations_by_variant(evaluations: list, baseline: str) -> dict[str, str]:
    """``{variant: path}`` of the collected evaluate outputs, from each one's ``variant``
    metadata; a ConfigError on a missing or repeated variant name, or an absent ``baseline``."""
    from components.errors import ConfigError
    from components.kfp_support import ui_metric_key

    evals: dict[str, str] = {}
    for evaluation in evaluations:
        name = evaluation.metadata.get("variant")
        if not isinstance(name, str) or not name:
            raise ConfigError(
                f"evaluation artifact {evaluation.path} has no 'variant' in its metadata "
                f"(metadata: {dict(evaluation.metadata)}): is it an evaluate step output?"
            )
        if name in evals:
            raise ConfigError(
                f"two evaluations of variant {name!r} ({evals[name]} and {evaluation.path}): "
                "every evaluate task of one report must have its own variant name"
            )
        evals[name] = evaluation.path
    if baseline not in evals:
        raise ConfigError(
            f"baseline {baseline!r} is not among the evaluated variants {sorted(evals)}"
        )
    keys: dict[str, str] = {}
    for name in evals:
        other = keys.setdefault(ui_metric_key(name, ""), name)
        if other != name:
            raise ConfigError(
                f"variants {other!r} and {name!r} would share metric keys in the UI "
                f"({ui_metric_key(name, 'ndcg@10')}): rename one"
            )
    return evals


def report(
    evaluations: Input[list[Dataset]],
    baseline: str,
    options: dict,
    report_html: Output[HTML],
    report_md: Output[Markdown],
    report_dir: Output[Dataset],
    metrics: Output[Metrics],
):
    """Compare every variant's evaluation with ``baseline`` (per-domain lifts, paired CIs).

    ``evaluations`` is the fan-in (``dsl.Collected``) of the evaluate tasks; each carries its
    variant name in its metadata (required, unique). ``metrics`` holds, for the UI, every
    variant's overall Recall/NDCG@K (``dynamic_ndcg_at_10``) and each non-baseline variant's
    relative overall lift over the baseline (``dynamic_ndcg_at_10_lift``, 0.1 = +10%).
    """
    import math
    import os

    import pyarrow.parquet as pq

    from components.kfp_support import copy_file, restore_ints, ui_metric_key, write_artifact_dir
    from components.report.component import evaluations_by_variant
    from components.report.report import COMPARISON_FILE, REPORT_HTML, REPORT_MD
    from components.report.report import report as run_report

    evals = evaluations_by_variant(evaluations, baseline)

    def produce(out_dir):
        return run_report(
            evals=evals, baseline=baseline, output_dir=out_dir, **restore_ints(options)
        )

    write_artifact_dir(report_dir.path, produce)
    copy_file(os.path.join(report_dir.path, REPORT_HTML), report_html.path)
    copy_file(os.path.join(report_dir.path, REPORT_MD), report_md.path)
    report_dir.metadata["variants"] = sorted(evals)
    report_dir.metadata["baseline"] = baseline

    rows = pq.read_table(os.path.join(report_dir.path, COMPARISON_FILE)).to_pylist()
    for row in (r for r in rows if r["cohort"] == "overall"):
        metrics.log_metric(ui_metric_key(row["variant"], row["metric"]), float(row["value"]))
        if row["variant"] == baseline:
            continue
        lift = row["lift"]
        if lift is None or math.isnan(lift):  # the baseline scored 0: no relative lift
            print(f"report: {row['variant']} {row['metric']} lift undefined (baseline is 0)")
            continue
        metrics.log_metric(ui_metric_key(row["variant"], row["metric"]) + "_lift", float(lift))


def component(image: str | None = None):
    """The report component running in ``image`` (default: ``$DWLREC_IMAGE`` or dwlrec:latest)."""
    return dsl.component(report, base_image=image or cpu_image(), install_kfp_package=False)
