"""What a submitted run is called and how its failures read, on either target: the display name,
the KFP description, the Vertex labels and one-line error messages.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from pipelines.pipeline import DEFAULT_VARIANTS, PIPELINE_NAME

TOOL_LABEL = "dwlrec"


def default_display_name(now: datetime | None = None) -> str:
    """``sparse-domain-dwl-YYYYmmdd-HHMMSS`` in UTC."""
    return f"{PIPELINE_NAME}-{(now or datetime.now(timezone.utc)):%Y%m%d-%H%M%S}"


def variants_of(params: dict | None) -> list[str]:
    """The names of the variants a run trains (the pipeline's default when not given)."""
    from components.core.variants import variant_names

    variants = (params or {}).get("variants")
    return variant_names(variants) if isinstance(variants, list | tuple) else DEFAULT_VARIANTS


def run_description(params: dict | None) -> str:
    """The KFP run description: what the run compares."""
    return f"dwlrec {PIPELINE_NAME}; variants: {', '.join(variants_of(params))}"


def run_labels(params: dict | None) -> dict[str, str]:
    """Vertex labels (values [a-z0-9_-], at most 63 characters)."""
    variants = re.sub(r"[^a-z0-9_-]", "-", "-".join(variants_of(params)).lower())[:63]
    return {"tool": TOOL_LABEL, "variants": variants}


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line; an HTTP error as status, reason and (short) body."""
    from kfp_server_api import ApiException

    if isinstance(exc, ApiException) and exc.status:
        body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
        text = f"HTTP {exc.status} {exc.reason or ''}: {body or ''}"
        if exc.status in (401, 403):
            text += " (give --token, $KF_PIPELINES_TOKEN or --cookies; check --namespace)"
    elif isinstance(exc, ApiException):
        text = f"{type(exc).__name__}: {exc.reason}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."
