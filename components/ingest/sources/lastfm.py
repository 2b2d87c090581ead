"""LastFM (HetRec 2011, hetrec2011-lastfm-2k): users tagging artists.

Interactions come from ``user_taggedartists-timestamps.dat`` (userID, artistID, tagID,
timestamp in ms) or else ``user_taggedartists.dat`` (userID, artistID, tagID, day, month, year;
the date's midnight UTC). Both are tab-separated with a header. An interaction is the FIRST time
a user tagged an artist (one row per user-artist pair, in the file order of that first row).

Domain of an artist *(our choice)*: its most used tag (ties: the globally more used tag, then the
lower tagID), named from ``tags.dat`` (tagID, tagValue). Only the ``top_tags`` (default 20) most
used tags overall are kept as domains; an artist whose most used tag is another one gets ``other``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.errors import ConfigError, InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.delimited import read_delimited
from components.ingest.sources.files import FileRef, find_input
from components.ingest.sources.numeric import to_numeric
from components.ingest.sources.output import raw_data, raw_items

log = logging.getLogger("dwlrec.ingest")

TIMESTAMPS_FILE = "user_taggedartists-timestamps.dat"
DATES_FILE = "user_taggedartists.dat"
TAGS_FILE = "tags.dat"
NOT_FOUND = (  # --input has no such file: the InputError says what the source reads
    f"no LastFM tagging file found; expected {TIMESTAMPS_FILE} or {DATES_FILE} "
    f"(HetRec 2011 hetrec2011-lastfm-2k, optionally zipped) with {TAGS_FILE}"
)
OTHER = "other"
DEFAULT_TOP_TAGS = 20


def read(path: Path, options: dict) -> RawData:
    """Read user-artist tagging events and the artists' top tags from ``path``."""
    top_tags = int(options.get("top_tags") or DEFAULT_TOP_TAGS)
    if top_tags < 1:
        raise ConfigError(f"--top-tags {top_tags}: expected >= 1")
    ref = find_input(path, (TIMESTAMPS_FILE, DATES_FILE), NOT_FOUND)
    bad = BadRows()
    with_ms = _has_ms_timestamps(ref)
    names = ["user", "artist", "tag"] + (["ms"] if with_ms else ["day", "month", "year"])
    data = read_delimited(ref, names, bad, delimiter="\t", skip_rows=1, quoting=False)
    numbers = {n: (pa.int64(), True) for n in names if n not in ("user", "artist", "tag")}
    table = to_numeric(
        data, ref, bad, {**numbers, "tag": (pa.int64(), True)}, id_columns=("user", "artist")
    )
    user = pc.cast(table.column("user"), pa.int64()).to_numpy()
    artist = pc.cast(table.column("artist"), pa.int64()).to_numpy()
    tag = table.column("tag").to_numpy()
    if with_ms:
        seconds = table.column("ms").to_numpy() // 1000
    else:
        seconds, ok = _date_seconds(*(table.column(n).to_numpy() for n in ("year", "month", "day")))
        if not ok.all():
            rows = np.flatnonzero(~ok)
            lines = data.lines_after_numeric(rows)
            bad.add_many(ref.name, lines, ["invalid day/month/year"] * len(rows))
            user, artist, tag, seconds = (a[ok] for a in (user, artist, tag, seconds))

    first = _first_tagging(user, artist, seconds)
    repeats = len(user) - len(first)  # later taggings of a user-artist pair: not interactions
    interactions = pa.table(
        {
            "user_id": pa.array(user[first].astype(str)),
            "item_id": pa.array(artist[first].astype(str)),
            "timestamp": pa.array(seconds[first], pa.int64()),
        }
    )
    tags_ref = ref.sibling([TAGS_FILE])
    tag_names = _tag_names(tags_ref) if tags_ref else {}
    if tags_ref is None:
        log.warning("%s: no %s next to it; domains are named tag:<tagID>", ref.name, TAGS_FILE)
    item_ids, domains = _artist_domains(artist, tag, tag_names, top_tags)
    return raw_data(
        interactions,
        raw_items(item_ids, domains),
        rows_read=data.rows_read,
        bad=bad,
        files=[ref, tags_ref],
        counts={"removed_by_first_tag": repeats},
    )


def _has_ms_timestamps(ref: FileRef) -> bool:
    header = [h.strip().lower() for h in ref.first_line().split("\t")]
    if header == ["userid", "artistid", "tagid", "timestamp"]:
        return True
    if header == ["userid", "artistid", "tagid", "day", "month", "year"]:
        return False
    raise InputError(
        f"{ref.name}:1: not a LastFM tagging file; expected the header "
        f"'userID artistID tagID timestamp' or 'userID artistID tagID day month year' "
        f"(tab-separated), found {ref.first_line()[:80]!r}"
    )


def _date_seconds(year, month, day) -> tuple[np.ndarray, np.ndarray]:
    """Midnight UTC of each date as epoch seconds, and whether the date is valid."""
    ok = (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (year >= 1) & (year <= 9999)
    y, m, d = np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1)
    months = (y - 1970) * 12 + (m - 1)
    first_of_month = months.astype("datetime64[M]").astype("datetime64[D]")
    date = first_of_month + (d - 1).astype("timedelta64[D]")
    ok &= date.astype("datetime64[M]") == first_of_month.astype("datetime64[M]")  # e.g. Feb 30
    return date.astype("datetime64[s]").astype(np.int64), ok


def _first_tagging(user: np.ndarray, artist: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Row index of each (user, artist) pair's earliest tagging, in file order of those rows."""
    row = np.arange(len(user))
    order = np.lexsort((row, seconds, artist, user))
    new_pair = np.r_[True, (np.diff(user[order]) != 0) | (np.diff(artist[order]) != 0)]
    return np.sort(order[new_pair])


def _tag_names(ref: FileRef) -> dict[int, str]:
    names = {}
    for line in ref.read_text().splitlines()[1:]:  # header: tagID tagValue
        tag_id, _, value = line.partition("\t")
        if tag_id.strip().isdigit() and value.strip():
            names[int(tag_id)] = value.strip()
    return names


def _artist_domains(artist, tag, tag_names: dict[int, str], top_tags: int):
    """Each artist's most used tag if it is among the ``top_tags`` overall, else ``other``."""
    tags, tag_code = np.unique(tag, return_inverse=True)
    tag_count = np.bincount(tag_code)
    # global rank of each tag: most used first, ties by lower tagID
    tag_rank = np.empty(len(tags), dtype=np.int64)
    tag_rank[np.lexsort((tags, -tag_count))] = np.arange(len(tags))

    artists, artist_code = np.unique(artist, return_inverse=True)
    pair = artist_code.astype(np.int64) * len(tags) + tag_code
    pairs, pair_count = np.unique(pair, return_counts=True)
    pair_artist, pair_tag = pairs // len(tags), pairs % len(tags)
    # per artist: highest count, then best global rank → first after this sort
    order = np.lexsort((tag_rank[pair_tag], -pair_count, pair_artist))
    first = order[np.r_[True, np.diff(pair_artist[order]) != 0]]
    best_tag = pair_tag[first]
    domains = [
        [tag_names.get(int(tags[t]), f"tag:{int(tags[t])}")] if tag_rank[t] < top_tags else [OTHER]
        for t in best_tag
    ]
    return artists.astype(str).tolist(), domains
