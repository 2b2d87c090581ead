"""dwlrec: sequential recommenders trained with the Dynamic Weighted Loss, per-domain evaluation.

One sub-package per pipeline step (ingest, stats, train, evaluate, report); the steps never import
each other. What two or more steps share lives in ``components.core`` (the model and its
artifact, sequences, ranking, metrics, cohorts, the weighting, reporting) and in this package's
top-level modules (errors, io, schema, download, clitools, kfp_support). Importing this package
never imports torch.
"""

__version__ = "0.1.0"
