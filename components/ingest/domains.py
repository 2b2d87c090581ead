"""The kept items' domains (SPEC §3): looked up in the source's items table, optionally capped
(``--min-domain-items``, ``--top-domains`` fold domains into ``other``), with the manifest counts."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import InputError
from components.ingest.options import IngestOptions
from components.ingest.raw import RawData
from components.schema import NO_DOMAIN

log = logging.getLogger("dwlrec.ingest")

OTHER_DOMAIN = "other"  # where --top-domains / --min-domain-items fold the domains they drop
UNMATCHED_WARN_SHARE = 0.05  # warn when more kept items than this have no row in the items table


def item_domains(
    item_ids: pa.Array,
    train_per_item: Callable[[], np.ndarray],
    raw: RawData,
    options: IngestOptions,
) -> tuple[list[list[str]], dict[str, int], dict]:
    """The kept items' domain lists, integer counts for the manifest, and the folded domains.

    ``train_per_item()``: the train interactions of item_idx 1..n (called only for the caps)."""
    domains, missing = _item_domains(item_ids, raw.items)
    n_items, unmatched = len(domains), int(missing.sum())
    source = raw.items_source or "the items table"
    if raw.items is not None and n_items and unmatched:
        share = unmatched / n_items
        detail = (
            f"{unmatched:,} of {n_items:,} items ({share:.1%}) have no row in {source} "
            f"(e.g. {_examples(item_ids.filter(pa.array(missing)))}; its ids look like "
            f"{_examples(raw.items.column('item_id'))})"
        )
        if unmatched == n_items:
            raise InputError(
                f"{detail}: the items table matches no interaction's item id (check "
                f"--items, --item-id-col and that both files use the same ids)"
            )
        if share > UNMATCHED_WARN_SHARE:
            log.warning("%s; they get domain %s", detail, NO_DOMAIN)
    folded: dict = {}
    if options.min_domain_items or options.top_domains:
        domains, folded = _cap_domains(domains, train_per_item(), options)
    n_none = sum(1 for d in domains if d == [NO_DOMAIN])
    if n_items and n_none == n_items:
        if raw.items is None:
            cause = (
                "the source gave no domains (sequences: an items CSV via --items/--domain-col; "
                "table: --items or a --domain-col column of the interactions table)"
            )
        else:
            cause = f"{source} gives no domain to any kept item (check --domain-col/--domain-sep)"
        log.warning(
            "!!! every one of the %d items is in domain %s: %s. The domain statistics and the "
            "domain-weighted losses have nothing to work with !!!",
            n_items,
            NO_DOMAIN,
            cause,
        )
    counts = {"items_unmatched_in_items_table": unmatched, "items_without_domain": n_none}
    if options.min_domain_items or options.top_domains:
        counts["domains_folded_into_other"] = len(folded)
    return domains, counts, folded


def _examples(values, n: int = 3) -> str:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    shown = [repr(v) for v in values.slice(0, n).to_pylist()]
    return ", ".join(shown) + (", …" if len(values) > n else "") if shown else "none"


def _item_domains(
    item_ids: pa.Array, raw_items: pa.Table | None
) -> tuple[list[list[str]], np.ndarray]:
    """Each kept item's domains (deduplicated, source order; none known → ["(none)"]) and a
    mask of the kept items without a row in ``raw_items``."""
    if raw_items is None:
        return [[NO_DOMAIN] for _ in range(len(item_ids))], np.zeros(len(item_ids), dtype=bool)
    # the first row per item_id wins when the items table repeats an id
    position = pc.index_in(item_ids, value_set=raw_items.column("item_id"))
    found = raw_items.column("domains").combine_chunks().take(position).to_pylist()
    domains = []
    for entry in found:
        cleaned = list(dict.fromkeys(d.strip() for d in (entry or []) if d and d.strip()))
        domains.append(cleaned or [NO_DOMAIN])
    return domains, position.is_null().to_numpy(zero_copy_only=False)


def _cap_domains(
    domains: list[list[str]], train_per_item: np.ndarray, options: IngestOptions
) -> tuple[list[list[str]], dict]:
    """Fold domains into ``other``: first those with < ``min_domain_items`` items, then all but
    the ``top_domains`` largest by train interactions (ties: more items, then name). ``(none)``
    and ``other`` are never folded nor counted among the N."""
    n_train: dict[str, int] = {}
    n_items: dict[str, int] = {}
    for entry, train in zip(domains, train_per_item.tolist(), strict=True):
        for name in entry:
            n_train[name] = n_train.get(name, 0) + train
            n_items[name] = n_items.get(name, 0) + 1
    candidates = [d for d in n_items if d not in (NO_DOMAIN, OTHER_DOMAIN)]
    fold: dict[str, str] = {}
    if options.min_domain_items:
        for name in candidates:
            if n_items[name] < options.min_domain_items:
                fold[name] = f"fewer than {options.min_domain_items} items (--min-domain-items)"
    if options.top_domains:
        remaining = sorted(
            (d for d in candidates if d not in fold), key=lambda d: (-n_train[d], -n_items[d], d)
        )
        for name in remaining[options.top_domains :]:
            fold[name] = f"not among the {options.top_domains} largest (--top-domains)"
    if not fold:
        return domains, {}
    capped = [
        list(dict.fromkeys(OTHER_DOMAIN if d in fold else d for d in entry)) for entry in domains
    ]
    folded = {
        name: {"items": n_items[name], "train_interactions": n_train[name], "why": why}
        for name, why in sorted(fold.items(), key=lambda kv: (-n_train[kv[0]], kv[0]))
    }
    log.info(
        "folded %d domain(s) into %r: %s",
        len(fold),
        OTHER_DOMAIN,
        ", ".join(f"{d} ({v['items']} items)" for d, v in list(folded.items())[:10])
        + (", …" if len(folded) > 10 else ""),
    )
    return capped, folded
