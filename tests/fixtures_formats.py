"""Tiny files in every real dataset format the ingest step reads (SPEC §3), for the tests.

Every writer encodes the same small interaction log, ``PLAN``: 5 users × 5 items each (item ids
1..6), distinct timestamps, so the readers' outputs can be compared with one expected table.
Writers return the directory (or file) to pass as ``--input``.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

N_USERS = 5
N_ITEMS = 6

# (user, item, timestamp seconds, rating) in file order; not sorted by time on purpose.
PLAN: list[tuple[int, int, int, float]] = [
    (user, (user + k) % N_ITEMS + 1, 1_000_000_000 + 1000 * user + 10 * ((k * 3) % 5), float(k + 1))
    for user in range(1, N_USERS + 1)
    for k in range(5)
]

# MovieLens genres per item (multi-label); item 6 has no genre → "(none)"
ML_GENRES = {
    1: ["Animation", "Comedy"],
    2: ["Film-Noir"],
    3: ["Drama"],
    4: ["Drama", "Film-Noir"],
    5: ["Comedy"],
    6: [],
}
ML_TITLES = {i: f"Movie {i} (1995)" for i in ML_GENRES}
ML_TITLES[3] = "Café, Society (1995)"  # accented (latin-1 in old files) and a comma (quoted CSV)
GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip


def expected_rows() -> list[tuple[str, str, int]]:
    """PLAN as the readers return it: (user_id, item_id, timestamp) strings/ints."""
    return [(str(u), str(i), t) for u, i, t, _ in PLAN]


def _write(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode(encoding) if isinstance(data, str) else data
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw, mtime=0)
    path.write_bytes(raw)
    return path


# --------------------------------------------------------------------------- MovieLens


def write_ml100k(root: Path, extra_lines: str = "") -> Path:
    """u.data (tab), u.item (pipe, latin-1, 19 flags), u.genre."""
    lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, t, r in PLAN]
    _write(root / "u.data", "\n".join(lines) + "\n" + extra_lines)
    items = []
    for item, genres in ML_GENRES.items():
        flags = ["1" if g in genres else "0" for g in GENRES_100K]
        items.append("|".join([str(item), ML_TITLES[item], "01-Jan-1995", "", "http://x"] + flags))
    _write(root / "u.item", "\n".join(items) + "\n", encoding="latin-1")
    _write(root / "u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(GENRES_100K)) + "\n")
    return root


def write_ml100k_zip(root: Path) -> Path:
    """The official archive layout: ml-100k.zip holding ml-100k/u.data, u.item, u.genre."""
    files = write_ml100k(root / "_unzipped")
    archive = root / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("u.data", "u.item", "u.genre"):
            handle.write(files / name, f"ml-100k/{name}")
    return archive


def write_ml1m(root: Path) -> Path:
    """ratings.dat + movies.dat, '::'-separated, movies.dat latin-1."""
    lines = [f"{u}::{i}::{int(r)}::{t}" for u, i, t, r in PLAN]
    _write(root / "ratings.dat", "\n".join(lines) + "\n")
    movies = [
        f"{i}::{ML_TITLES[i]}::{'|'.join(g) or '(no genres listed)'}" for i, g in ML_GENRES.items()
    ]
    _write(root / "movies.dat", "\n".join(movies) + "\n", encoding="latin-1")
    return root


def write_ml20m(root: Path, gz: bool = False) -> Path:
    """ratings.csv (+ .gz) + movies.csv with a header and quoted titles holding commas."""
    lines = ["userId,movieId,rating,timestamp"] + [
        f"{u},{i},{r / 2 + 0.5},{t}" for u, i, t, r in PLAN
    ]
    _write(root / ("ratings.csv.gz" if gz else "ratings.csv"), "\n".join(lines) + "\n")
    movies = ["movieId,title,genres"]
    for item, genres in ML_GENRES.items():
        title = ML_TITLES[item]
        title = f'"{title}"' if "," in title else title
        movies.append(f"{item},{title},{'|'.join(genres) or '(no genres listed)'}")
    _write(root / "movies.csv", "\n".join(movies) + "\n")
    return root


# --------------------------------------------------------------------------- LastFM

LASTFM_TAGS = {1: "rock", 2: "jazz", 3: "électro", 4: "pop"}
# each artist's tag assignments (tag id per event); most used: 1 → rock, 2 → jazz, 3 → électro…
LASTFM_ARTIST_TAGS = {1: [1, 1, 2], 2: [2, 2, 1], 3: [1, 3, 3, 3], 4: [4], 5: [1], 6: [2, 1]}


def lastfm_events() -> list[tuple[int, int, int, int]]:
    """(user, artist, tag, ms): each PLAN pair tagged with every tag of the artist, the first at
    the PLAN time and the others 40, 80… days later; the later ones come FIRST in the file."""
    first, later = [], []
    for user, item, seconds, _ in PLAN:
        for n, tag in enumerate(LASTFM_ARTIST_TAGS[item]):
            (later if n else first).append((user, item, tag, (seconds + 86400 * 40 * n) * 1000))
    return later + first


def write_lastfm(root: Path, with_ms: bool = True) -> Path:
    """user_taggedartists-timestamps.dat (ms) or user_taggedartists.dat (dates) + tags.dat."""
    import datetime as dt

    events = lastfm_events()
    if with_ms:
        lines = ["userID\tartistID\ttagID\ttimestamp"]
        lines += [f"{u}\t{a}\t{t}\t{ms}" for u, a, t, ms in events]
        _write(root / "user_taggedartists-timestamps.dat", "\r\n".join(lines) + "\r\n")
    else:
        lines = ["userID\tartistID\ttagID\tday\tmonth\tyear"]
        for u, a, t, ms in events:
            day = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
            lines.append(f"{u}\t{a}\t{t}\t{day.day}\t{day.month}\t{day.year}")
        _write(root / "user_taggedartists.dat", "\n".join(lines) + "\n")
    tags = ["tagID\ttagValue"] + [f"{k}\t{v}" for k, v in LASTFM_TAGS.items()]
    _write(root / "tags.dat", "\n".join(tags) + "\n", encoding="latin-1")
    return root


# --------------------------------------------------------------------------- Amazon

ASINS = {i: f"B00000000{i}" for i in range(1, N_ITEMS + 1)}
REVIEWERS = {u: f"A{u:013d}" for u in range(1, N_USERS + 1)}
AMAZON_PATHS = {  # item → category paths (2014 style: several paths per item)
    1: [["Beauty", "Skin Care", "Face"]],
    2: [["Beauty", "Makeup", "Eyes"], ["Beauty", "Skin Care"]],
    3: [["Beauty", "Makeup"]],
    4: [["Beauty", "Hair Care", "Shampoo"]],
    5: [["Beauty"]],  # no category at depth 1 → "(none)"
    6: [["Beauty", "Fragrance"]],
}


def write_amazon_2014(root: Path) -> Path:
    """reviews_*.json.gz (JSON lines) + meta_*.json.gz (Python dict literals, single quotes)."""
    reviews = [
        json.dumps({"reviewerID": REVIEWERS[u], "asin": ASINS[i], "reviewerName": "X, Y",
                    "overall": r, "summary": "ok", "unixReviewTime": t, "reviewTime": "01 1, 2001"})
        for u, i, t, r in PLAN
    ]  # fmt: skip
    _write(root / "reviews_Beauty_5.json.gz", "\n".join(reviews) + "\n")
    meta = [
        repr({"asin": ASINS[i], "title": "Rose d'été", "salesRank": {"Beauty": 1}, "categories": p})
        for i, p in AMAZON_PATHS.items()
    ]
    _write(root / "meta_Beauty.json.gz", "\n".join(meta) + "\n")
    return root


def write_amazon_2018_csv(root: Path, item_first: bool = True) -> Path:
    """Ratings-only CSV, no header: item,user,rating,timestamp (2018) or user,item,… (2014)."""
    if item_first:
        lines = [f"{ASINS[i]},{REVIEWERS[u]},{r},{t}" for u, i, t, r in PLAN]
    else:
        lines = [f"{REVIEWERS[u]},{ASINS[i]},{r},{t}" for u, i, t, r in PLAN]
    _write(root / "Beauty.csv", "\n".join(lines) + "\n")
    meta = [json.dumps({"asin": ASINS[i], "category": p[0]}) for i, p in AMAZON_PATHS.items()]
    _write(root / "meta_Beauty.json", "\n".join(meta) + "\n")
    return root


def write_amazon_2023(root: Path, csv: bool = False) -> Path:
    """2023: user_id, parent_asin, rating, timestamp in ms (JSONL or CSV) + meta with categories."""
    if csv:
        lines = ["user_id,parent_asin,rating,timestamp"]
        lines += [f"{REVIEWERS[u]},{ASINS[i]},{r},{t * 1000}" for u, i, t, r in PLAN]
        _write(root / "All_Beauty.train.csv", "\n".join(lines) + "\n")
    else:
        lines = [
            json.dumps({"rating": r, "title": "t", "text": "x", "images": [], "asin": "X" + ASINS[i],
                        "parent_asin": ASINS[i], "user_id": REVIEWERS[u], "timestamp": t * 1000,
                        "helpful_vote": 0, "verified_purchase": True})
            for u, i, t, r in PLAN
        ]  # fmt: skip
        _write(root / "All_Beauty.jsonl.gz", "\n".join(lines) + "\n")
    meta = []
    for item, paths in AMAZON_PATHS.items():
        categories = paths[0] if item != 6 else []  # item 6: only main_category
        meta.append(json.dumps({"main_category": "All Beauty", "title": "x", "categories": categories,
                                "parent_asin": ASINS[item]}))  # fmt: skip
    _write(root / "meta_All_Beauty.jsonl", "\n".join(meta) + "\n")
    return root


# --------------------------------------------------------------------------- Yelp

BUSINESSES = {i: f"biz-{i:02d}_x" for i in range(1, N_ITEMS + 1)}
YELP_CATEGORIES = {
    1: "Restaurants, Pizza",
    2: "Bars, Nightlife",
    3: "Pizza, Restaurants",
    4: "Hair Salons, Beauty & Spas",
    5: None,  # no categories → "(none)"
    6: "Nightlife",
}


def write_yelp(root: Path, academic_names: bool = False) -> Path:
    import datetime as dt

    prefix = "yelp_academic_dataset_" if academic_names else ""
    reviews = []
    for n, (u, i, t, r) in enumerate(PLAN):
        date = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        reviews.append(json.dumps({"review_id": f"r{n}", "user_id": f"user-{u}", "stars": r,
                                   "business_id": BUSINESSES[i], "text": "Nice, \"really\".",
                                   "date": date}))  # fmt: skip
    _write(root / f"{prefix}review.json", "\n".join(reviews) + "\n")
    business = [
        json.dumps({"business_id": BUSINESSES[i], "name": "n", "categories": c})
        for i, c in YELP_CATEGORIES.items()
    ]
    _write(root / f"{prefix}business.json", "\n".join(business) + "\n")
    return root


# --------------------------------------------------------------------------- sequences, table

SEQ_DOMAINS = {
    1: "Makeup",
    2: "Skin Care",
    3: "Makeup|Tools",
    4: "",
    5: "Fragrance",
    6: "Skin Care",
}


def write_sequences(root: Path) -> Path:
    """sequences.txt (user then items in time order) + items.csv with a category column."""
    by_user: dict[int, list[tuple[int, int]]] = {}
    for u, i, t, _ in PLAN:
        by_user.setdefault(u, []).append((t, i))
    lines = [f"{u} " + " ".join(str(i) for _, i in sorted(v)) for u, v in by_user.items()]
    _write(root / "sequences.txt", "\n".join(lines) + "\n")
    rows = ["item_id,asin,category"] + [f"{i},{ASINS[i]},{d}" for i, d in SEQ_DOMAINS.items()]
    _write(root / "items.csv", "\n".join(rows) + "\n")
    return root


def sequence_rows() -> list[tuple[str, str, int]]:
    """What the sequences reader returns for ``write_sequences``: position as the timestamp."""
    rows = []
    by_user: dict[int, list[tuple[int, int]]] = {}
    for u, i, t, _ in PLAN:
        by_user.setdefault(u, []).append((t, i))
    for u, v in by_user.items():
        rows += [(str(u), str(i), k) for k, (_, i) in enumerate(sorted(v))]
    return rows


def write_table_csv(root: Path) -> Path:
    """events.csv with custom column names + items.csv with '|'-separated domains."""
    lines = ["uid,sku,ts,stars,note"] + [f'u{u},sku{i},{t},{r},"a, b"' for u, i, t, r in PLAN]
    _write(root / "events.csv", "\n".join(lines) + "\n")
    rows = ["item_id,domains"] + [f"sku{i},{d}" for i, d in SEQ_DOMAINS.items()]
    _write(root / "items.csv", "\n".join(rows) + "\n")
    return root / "events.csv"


def write_table_parquet(root: Path) -> Path:
    """interactions.parquet (timestamp column of Arrow timestamp type) + items.parquet (lists)."""
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({
            "user_id": [u for u, _, _, _ in PLAN],  # integers: the reader makes them strings
            "item_id": [f"sku{i}" for _, i, _, _ in PLAN],
            "timestamp": pa.array([t * 1000 for _, _, t, _ in PLAN], pa.timestamp("ms")),
        }),
        root / "interactions.parquet",
    )  # fmt: skip
    pq.write_table(
        pa.table({
            "item_id": [f"sku{i}" for i in SEQ_DOMAINS],
            "domains": [[d for d in v.split("|") if d] for v in SEQ_DOMAINS.values()],
        }),
        root / "items.parquet",
    )  # fmt: skip
    return root
