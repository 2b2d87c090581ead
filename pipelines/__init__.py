"""The ``sparse-domain-dwl`` Kubeflow pipeline (SPEC §9): build, compile, run locally, submit.

Importing this package imports kfp but never torch.
"""
