"""MovieLens (GroupLens): ML-100K, ML-1M/10M, ML-20M/25M/32M/latest; raw files or official zips.

Layouts, recognised by file name (or, for a file with another name, by its first line):
- ``u.data`` (user, item, rating, timestamp; tab) + ``u.item`` (pipe-separated, latin-1, 19 genre
  flags in ``u.genre``'s order; the standard 19 names when ``u.genre`` is absent);
- ``ratings.dat`` + ``movies.dat`` (``::``-separated, genres ``|``-separated; latin-1 in ML-1M);
- ``ratings.csv`` + ``movies.csv`` (header, quoted titles; ``(no genres listed)`` → no domain).
Domains are the movie's genres (multi-label). Files may be gzip'd; a directory may hold the files
(or one folder below), or an official ``ml-*.zip``; ``--input`` may be the zip itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from components.errors import InputError
from components.ingest.raw import RawData
from components.ingest.sources.bad_rows import BadRows
from components.ingest.sources.delimited import header_fields, read_delimited
from components.ingest.sources.files import FileRef, find_input, items_file
from components.ingest.sources.numeric import to_numeric
from components.ingest.sources.output import raw_data, raw_items

log = logging.getLogger("dwlrec.ingest")

RATINGS_NAMES = ("u.data", "ratings.dat", "ratings.csv")
NOT_FOUND = (  # --input has no such file: the InputError says what the source reads
    f"no MovieLens ratings file found; expected one of {', '.join(RATINGS_NAMES)} "
    f"(optionally .gz), or an official ml-*.zip archive"
)
ITEMS_NAMES = {"u.data": "u.item", "ratings.dat": "movies.dat", "ratings.csv": "movies.csv"}
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
NO_GENRES = "(no genres listed)"
RATINGS_HEADER = ["userid", "movieid", "rating", "timestamp"]
COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def read(path: Path, options: dict) -> RawData:
    """Read MovieLens ratings and movie genres from ``path`` (file, directory or zip)."""
    ratings = find_input(path, RATINGS_NAMES, NOT_FOUND)
    layout = _layout(ratings)
    bad = BadRows()
    data, rows_read = _read_ratings(ratings, layout, bad)
    items_ref = items_file(options, ratings, [ITEMS_NAMES[layout]])
    if items_ref is None:
        raise InputError(
            f"{ratings.name}: no MovieLens items file {ITEMS_NAMES[layout]} next to it "
            f"(genres are the domains); pass its location with --items"
        )
    items = _read_items(items_ref, ratings)
    return raw_data(
        data,
        items,
        rows_read=rows_read,
        bad=bad,
        files=[ratings, items_ref],
        items_source=items_ref,
    )


def _layout(ratings: FileRef) -> str:
    """Which MovieLens layout a ratings file has: by name, else by its first line."""
    if ratings.basename in RATINGS_NAMES:
        return ratings.basename
    first = ratings.first_line()
    if "::" in first:
        return "ratings.dat"
    if "\t" in first:
        return "u.data"
    if first.lower().replace(" ", "").startswith("userid,movieid"):
        return "ratings.csv"
    raise InputError(
        f"{ratings.name}:1: not a MovieLens ratings file (expected u.data's tab-separated "
        f"'user item rating timestamp', ratings.dat's '::' or ratings.csv's header "
        f"userId,movieId,rating,timestamp); found {first[:80]!r}"
    )


def _read_ratings(ref: FileRef, layout: str, bad: BadRows) -> tuple[pa.Table, int]:
    """The ratings as (user_id, item_id, rating, timestamp) and the number of data rows seen."""
    if layout == "ratings.csv":
        header = [h.lower() for h in header_fields(ref)]
        if header != RATINGS_HEADER:
            raise InputError(
                f"{ref.name}:1: expected the header userId,movieId,rating,timestamp, "
                f"found {','.join(header_fields(ref))[:100]!r}"
            )
        data = read_delimited(ref, COLUMNS, bad, delimiter=",", skip_rows=1)
    else:
        delimiter = "\t" if layout == "u.data" else "::"
        data = read_delimited(ref, COLUMNS, bad, delimiter=delimiter, quoting=False)
    table = to_numeric(
        data,
        ref,
        bad,
        {"rating": (pa.float64(), True), "timestamp": (pa.int64(), True)},
        id_columns=("user_id", "item_id"),
        integer_ids=True,  # MovieLens ids are integers: the engines skip hashing their text
    )
    return table, data.rows_read


def _read_items(ref: FileRef, ratings: FileRef) -> pa.Table:
    name = ref.basename
    first = ref.first_line()
    if name == "u.item" or (name not in ("movies.dat", "movies.csv") and first.count("|") >= 23):
        ids, domains, problems = _parse_u_item(ref, _genre_names(ratings, ref))
    elif name == "movies.dat" or "::" in first:
        ids, domains, problems = _parse_movies_dat(ref)
    elif first.lower().startswith("movieid"):
        ids, domains, problems = _parse_movies_csv(ref)
    else:
        raise InputError(
            f"{ref.name}:1: not a MovieLens items file (u.item, movies.dat or movies.csv); "
            f"found {first[:80]!r}"
        )
    if problems:
        log.warning(
            "%s: skipped %d malformed item line(s); first: %s", ref.name, len(problems), problems[0]
        )
    return raw_items(ids, domains)


def _genre_names(ratings: FileRef, items: FileRef) -> list[str]:
    genre_file = items.sibling(["u.genre"]) or ratings.sibling(["u.genre"])
    if genre_file is None:
        return list(GENRES_100K)
    pairs = []
    for line in genre_file.read_text().splitlines():
        name, _, index = line.strip().rpartition("|")
        if name and index.strip().isdigit():
            pairs.append((int(index), name))
    return [name for _, name in sorted(pairs)] or list(GENRES_100K)


def _item_lines(ref: FileRef, problems: list[str]) -> Iterator[tuple[int, str]]:
    """The non-blank lines of an items file with their numbers; undecodable ones go to
    ``problems``."""
    text, undecodable = ref.read_text_checked()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if number in undecodable:
            problems.append(f"{ref.name}:{number}: not valid UTF-8")
            continue
        yield number, line


def _parse_u_item(ref: FileRef, genres: list[str]):
    ids: list[str] = []
    domains: list[list[str]] = []
    problems: list[str] = []
    for number, line in _item_lines(ref, problems):
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) < 6 or not fields[0].strip().isdigit() or len(flags) != len(genres):
            problems.append(f"{ref.name}:{number}: expected 5 + {len(genres)} fields")
            continue
        ids.append(fields[0].strip())
        domains.append([g for g, flag in zip(genres, flags, strict=True) if flag.strip() == "1"])
    return ids, domains, problems


def _parse_movies_dat(ref: FileRef):
    ids: list[str] = []
    domains: list[list[str]] = []
    problems: list[str] = []
    for number, line in _item_lines(ref, problems):
        fields = line.split("::")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            problems.append(f"{ref.name}:{number}: expected MovieID::Title::Genres")
            continue
        ids.append(fields[0].strip())
        domains.append(_split_genres(fields[-1]))
    return ids, domains, problems


def _parse_movies_csv(ref: FileRef):
    bad = BadRows()
    data = read_delimited(ref, ["item_id", "title", "genres"], bad, delimiter=",", skip_rows=1)
    problems = bad.examples
    ids = data.table.column("item_id").to_pylist()
    genres = data.table.column("genres").to_pylist()
    keep = [value.strip().isdigit() for value in ids]
    problems += [
        f"{ref.name}: non-numeric movieId {v!r}" for v, ok in zip(ids, keep, strict=True) if not ok
    ]
    return (
        [v.strip() for v, ok in zip(ids, keep, strict=True) if ok],
        [_split_genres(g) for g, ok in zip(genres, keep, strict=True) if ok],
        problems,
    )


def _split_genres(text: str) -> list[str]:
    text = text.strip()
    if not text or text == NO_GENRES:
        return []
    return [g.strip() for g in text.split("|") if g.strip()]
