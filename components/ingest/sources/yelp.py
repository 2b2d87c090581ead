"""Yelp Open Dataset: ``review.json`` + ``business.json`` (JSON lines; optionally .gz or zipped).

Reviews: ``user_id, business_id, stars, date`` ("YYYY-MM-DD HH:MM:SS", read as UTC; a bare
"YYYY-MM-DD" is midnight). Businesses: ``business_id, categories`` ("A, B, C" or null).
Domain: the business's first listed category; with ``domain_map`` ({category: domain}, a dict,
JSON text or a .json file) *(our choice)*: the mapped domain of every listed category found in the
map (deduplicated, listed order), none when no category is mapped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.jsonl import read_json_lines
from components.ingest.sources.output import raw_data, raw_items

log = logging.getLogger("dwlrec.ingest")

REVIEW_NAMES = ("review.json", "yelp_academic_dataset_review.json")
BUSINESS_NAMES = ("business.json", "yelp_academic_dataset_business.json")
NOT_FOUND = (  # --input has no such file: the InputError says what the source reads
    f"no Yelp reviews file found; expected {' or '.join(REVIEW_NAMES)} with "
    f"{' or '.join(BUSINESS_NAMES)} (JSON lines, optionally .gz or in a .zip)"
)
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
REVIEW_FIELDS = {
    "user_id": pa.string(),
    "business_id": pa.string(),
    "stars": pa.float64(),
    "date": pa.string(),
}
REQUIRED = ("user_id", "business_id", "date")


def read(path: Path, options: dict) -> RawData:
    """Read Yelp reviews and business categories from ``path`` (file, directory or zip)."""
    domain_map = load_domain_map(options.get("domain_map"))
    reviews = find_input(path, REVIEW_NAMES, NOT_FOUND)
    bad = BadRows()
    rows = read_json_lines(reviews, REVIEW_FIELDS, bad, required=REQUIRED)
    seconds = _parse_dates(rows.table.column("date"))
    if seconds.null_count and rows.lines is None:
        bad = BadRows()  # the fast reader has no line numbers: read again, line by line
        rows = read_json_lines(reviews, REVIEW_FIELDS, bad, required=REQUIRED, exact=True)
        seconds = _parse_dates(rows.table.column("date"))
    table = rows.table
    if seconds.null_count:
        assert rows.lines is not None  # the exact reader's (see above)
        invalid = seconds.is_null().to_numpy(zero_copy_only=False)
        index = np.flatnonzero(invalid)
        dates = table.column("date")
        bad.add_many(
            reviews.name,
            rows.lines[index],
            [f"unparsable date {dates[int(i)].as_py()!r}" for i in index[:5]]
            + [""] * max(0, len(index) - 5),
        )
        keep = pa.array(~invalid)
        table, seconds = table.filter(keep), seconds.filter(keep)
    interactions = pa.table(
        {
            "user_id": table.column("user_id"),
            "item_id": table.column("business_id"),
            "timestamp": seconds,
            "rating": table.column("stars"),
        }
    )

    business = items_file(options, reviews, BUSINESS_NAMES)
    if business is None:
        raise InputError(
            f"{reviews.name}: no {' or '.join(BUSINESS_NAMES)} next to it (the business "
            f"categories are the domains); pass its location with --items"
        )
    return raw_data(
        interactions,
        _read_business(business, domain_map),
        rows_read=rows.rows_read,
        bad=bad,
        files=[reviews, business],
        items_source=business,
    )


def load_domain_map(value) -> dict[str, str] | None:
    """``--domain-map``: a dict, JSON text or a JSON file path → {category: domain}."""
    if value is None:
        return value
    text = value if isinstance(value, dict) else str(value)
    if isinstance(text, str) and not text.lstrip().startswith(("{", "[")):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(f"--domain-map {value}: cannot read ({reason})") from exc
    try:
        mapping = text if isinstance(text, dict) else json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--domain-map {value}: not valid JSON ({exc})") from exc
    if not isinstance(mapping, dict):
        raise ConfigError(f"--domain-map {value}: expected a JSON object {{category: domain}}")
    wrong = [k for k, v in mapping.items() if not isinstance(v, str) or not v.strip()]
    if wrong:
        raise ConfigError(
            f"--domain-map {value}: category {wrong[0]!r} maps to {mapping[wrong[0]]!r}; "
            f"expected a domain name (a non-empty string)"
        )
    return {str(k): v.strip() for k, v in mapping.items()}


def _parse_dates(dates: pa.ChunkedArray | pa.Array) -> pa.Array:
    dates = pc.utf8_trim_whitespace(dates)
    result = None
    for fmt in DATE_FORMATS:
        parsed = pc.cast(pc.strptime(dates, format=fmt, unit="s", error_is_null=True), pa.int64())
        result = parsed if result is None else pc.coalesce(result, parsed)
        if result.null_count == 0:
            break
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def _read_business(ref: FileRef, domain_map: dict[str, str] | None) -> pa.Table:
    bad = BadRows()
    fields = {"business_id": pa.string(), "categories": pa.string()}
    rows = read_json_lines(ref, fields, bad, required=("business_id",))
    bad.log_skipped(ref.name, "business line")
    domains = []
    for text in rows.table.column("categories").to_pylist():
        listed = [c.strip() for c in (text or "").split(",") if c.strip()]
        if domain_map is None:
            domains.append(listed[:1])
        else:
            domains.append(list(dict.fromkeys(domain_map[c] for c in listed if c in domain_map)))
    return raw_items(rows.table.column("business_id"), domains)
