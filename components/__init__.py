"""dwlrec: sequential recommenders trained with the Dynamic Weighted Loss, per-domain evaluation.

One sub-package per pipeline step (ingest, stats, train, evaluate, report); shared code lives in
this package's top-level modules (errors, io, schema, sequences). Importing this package never
imports torch.
"""

__version__ = "0.1.0"
