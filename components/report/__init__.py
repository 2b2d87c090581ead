"""The report step: compare variants' evaluations per domain with paired bootstrap CIs.

``report`` is imported lazily so that importing this package stays light.
"""

from __future__ import annotations

__all__ = ["report"]


def report(*args, **kwargs) -> dict:
    """See :func:`components.report.report.report`."""
    from components.report.report import report as _report

    return _report(*args, **kwargs)
