"""Download integrity (issue 11, items 3, 5, 6, 10; SPEC §3 "Downloads are complete").

A loopback HTTP server that misbehaves on demand (a body shorter than its Content-Length, a
connection closed early, a cut chunked body, an HTML error page under a binary name) and then
recovers; the GCS emulator for ``--sha256`` on ``gs://`` and object names with ``..``; a closed
port for the bounded GCS retry deadline. Every failure must name the URL (not the cache file)
and leave nothing in the cache; the recovered download must be cached and reused.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import threading
import time
import zipfile
from pathlib import Path

import fixtures_formats as fx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_io_remote import free_port, gcs  # noqa: F401  (gcs: the emulator fixture)

from components.download import localize
from components.errors import ConfigError, InputError

CSV_OPTIONS = ["--user-col", "uid", "--item-col", "sku", "--time-col", "ts",
               "--min-user-interactions", "3", "--min-item-interactions", "1"]  # fmt: skip


def cache_entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*")) if cache.exists() else []


# --------------------------------------------------------------------------- http(s)://


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves ``files[path] = (content_type, body)`` in the way ``modes[path]`` says."""

    files: dict[str, tuple[str, bytes]] = {}
    modes: dict[str, str] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Misbehaving.requests.append(self.path)
        if self.path not in self.files:
            self.send_error(404)
            return
        content_type, body = self.files[self.path]
        mode = self.modes.get(self.path, "good")
        if mode == "reset":  # close before any response
            self.close_connection = True
            return
        if mode == "error-500":
            self.send_error(500, "Internal Server Error")
            return
        if mode.startswith("html"):
            body = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>\n"
            content_type = "text/html" if mode == "html" else "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if mode == "chunked-cut":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = body[: len(body) // 2]
            self.wfile.write(f"{len(half):x}\r\n".encode() + half + b"\r\n")
            self.wfile.write(f"{len(body):x}\r\n".encode() + body[:10])  # then hang up
            return
        if mode != "no-length-cut":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # HTTP/1.0: the server closes the connection when the handler returns
        self.wfile.write(body[: len(body) // 2] if mode.endswith("cut") else body)

    def log_message(self, *args):  # keep test output quiet
        pass


def parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(100))}), sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    csv = fx.write_table_csv(root)
    Misbehaving.files = {
        "/ml-100k.zip": ("application/zip", fx.write_ml100k_zip(root).read_bytes()),
        "/events.csv": ("text/csv", csv.read_bytes()),
        "/items.csv": ("text/csv", (root / "items.csv").read_bytes()),
        "/data.parquet": ("application/octet-stream", parquet_bytes()),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def web(server):
    Misbehaving.modes = {}
    Misbehaving.requests.clear()
    return server


FAILURES = [
    # (mode, path, message regex)
    ("cut", "/events.csv", r"download incomplete, \d+ of \d+ bytes \(Content-Length\)"),
    ("cut", "/ml-100k.zip", r"download incomplete"),
    ("reset", "/events.csv", r"download failed \(.*(closed|disconnect|reset)"),
    ("chunked-cut", "/events.csv", r"download failed \(IncompleteRead"),
    ("error-500", "/ml-100k.zip", r"download failed \(HTTP 500"),
    ("html", "/ml-100k.zip", r"sent an HTML page \(Content-Type text/html\), not ml-100k\.zip"),
    ("html-no-type", "/events.csv", r"sent an HTML page"),  # sniffed from the body
    ("no-length-cut", "/ml-100k.zip", r"not a complete zip archive"),  # no length to compare
    ("no-length-cut", "/data.parquet", r"not a complete Parquet file"),
]


@pytest.mark.parametrize(("mode", "path", "message"), FAILURES)
def test_bad_download_is_refused_caches_nothing_then_recovers(web, tmp_path, mode, path, message):
    url, cache = web + path, tmp_path / "cache"
    Misbehaving.modes[path] = mode
    with pytest.raises(InputError, match=message) as failure:
        localize(url, cache_dir=cache)
    text = str(failure.value)
    assert text.startswith(f"{url}: ") and "\n" not in text and str(cache) not in text
    assert cache_entries(cache) == []  # no partial file, no empty entry directory
    # the server recovers: the next run downloads the whole file and caches it
    Misbehaving.modes[path] = "good"
    good = localize(url, cache_dir=cache)
    assert good.read_bytes() == Misbehaving.files[path][1]
    record = json.loads((good.parent / f".{good.name}.dwlrec.json").read_text())
    assert record["size"] == good.stat().st_size
    assert record["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert localize(url, cache_dir=cache) == good and Misbehaving.requests.count(path) == 2
    assert [p.name for p in good.parent.iterdir() if p.name.endswith(".part")] == []


def test_csv_cut_in_half_fails_the_ingest_and_writes_nothing(web, tmp_path, capsys):
    from components.ingest.cli import main

    url, cache, out = web + "/events.csv", tmp_path / "cache", tmp_path / "out"
    argv = ["--source", "table", "--input", url, "--output", str(out), "--cache-dir", str(cache),
            *CSV_OPTIONS]  # fmt: skip
    Misbehaving.modes["/events.csv"] = "cut"
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and url in errors[0] and "incomplete" in errors[0]
    assert not out.exists() and cache_entries(cache) == []
    Misbehaving.modes["/events.csv"] = "good"
    assert main(argv) == 0
    assert f"{fx.N_USERS} users" in capsys.readouterr().out  # all users, not half of them


def test_poisoned_cache_entry_is_downloaded_again(web, tmp_path):
    url, cache = web + "/events.csv", tmp_path / "cache"
    good = localize(url, cache_dir=cache)
    body = good.read_bytes()
    # an entry cached by an older version: a short file, no integrity record
    good.write_bytes(body[: len(body) // 2])
    (good.parent / f".{good.name}.dwlrec.json").unlink()
    assert localize(url, cache_dir=cache).read_bytes() == body
    # modified in place (same size) since it was downloaded: the sha256 record catches it
    good.write_bytes(body.replace(b"u1", b"u9"))
    assert localize(url, cache_dir=cache).read_bytes() == body
    # truncated behind the record's back
    good.write_bytes(body[:10])
    assert localize(url, cache_dir=cache).read_bytes() == body
    assert Misbehaving.requests.count("/events.csv") == 4
    # poisoned while the server is down: the bad copy is dropped, not kept for later
    good.write_bytes(body[:10])
    Misbehaving.modes["/events.csv"] = "cut"
    with pytest.raises(InputError, match=rf"^{url}: download incomplete"):
        localize(url, cache_dir=cache)
    assert cache_entries(cache) == []


def test_url_sha256_is_checked_against_the_cache_and_must_be_hex(web, tmp_path):
    url, cache = web + "/events.csv", tmp_path / "cache"
    digest = hashlib.sha256(Misbehaving.files["/events.csv"][1]).hexdigest()
    localize(url, cache_dir=cache, sha256=digest.upper())  # hex case does not matter
    with pytest.raises(InputError, match=rf"^{url}: sha256 mismatch \(expected 0{{64}}"):
        localize(url, cache_dir=cache, sha256="0" * 64)
    assert localize(url, cache_dir=cache, sha256=digest).read_bytes().startswith(b"uid,")
    with pytest.raises(ConfigError, match=r"--sha256 'abc': expected 64 hexadecimal digits"):
        localize(url, cache_dir=tmp_path / "other", sha256="abc")
    assert cache_entries(tmp_path / "other") == []


def test_cache_dir_that_is_a_file_is_a_clear_error(web, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=rf"{blocker}: cannot use as the download cache"):
        localize(web + "/events.csv", cache_dir=blocker)
    assert blocker.read_text() == "not a directory"


def test_sha256_for_a_local_directory_is_refused(tmp_path):
    directory = fx.write_ml100k(tmp_path / "ml")
    with pytest.raises(ConfigError, match=r"--sha256 applies to a single file, but .* directory"):
        localize(directory, sha256="0" * 64)
    file = directory / "u.data"
    with pytest.raises(InputError, match=rf"{file}: sha256 mismatch"):
        localize(file, sha256="0" * 64)
    assert localize(file, sha256=hashlib.sha256(file.read_bytes()).hexdigest()) == file


# --------------------------------------------------------------------------- gs://


def _keep_dot_dot(path: str) -> str:
    """The emulator's in-memory store key for an object name, ``..`` kept (real GCS allows it;
    the emulator refuses such names to protect its own disk store, which is not in use here)."""
    return "/".join(p for p in path.replace("\\", "/").strip("/").split("/") if p)


@pytest.fixture(scope="module")
def bucket(gcs):  # noqa: F811 (the imported fixture)
    from gcp_storage_emulator import storage as emulator_storage
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator_storage._FileStore, "_norm", staticmethod(_keep_dot_dot))
        client = storage.Client(credentials=AnonymousCredentials(), project="dwlrec-test")
        data = client.bucket("data")
        data.blob("evil/ok.txt").upload_from_string(b"fine\n", retry=None)
        data.blob("evil/../../escaped.txt").upload_from_string(b"outside\n", retry=None)
        data.blob("dots/./a.txt").upload_from_string(b"dot\n", retry=None)
        yield {"bucket": data, "files": gcs["files"]}


def test_gs_object_sha256_is_verified(bucket, tmp_path):
    uri, cache = "gs://data/ml/ml-100k/u.data", tmp_path / "cache"
    digest = hashlib.sha256((bucket["files"] / "u.data").read_bytes()).hexdigest()
    assert localize(uri, cache_dir=cache, sha256=digest).name == "u.data"
    with pytest.raises(InputError, match=rf"^{uri}: sha256 mismatch \(expected 0{{64}}"):
        localize(uri, cache_dir=tmp_path / "bad", sha256="0" * 64)
    assert cache_entries(tmp_path / "bad") == []


def test_gs_prefix_with_sha256_is_refused_naming_the_option(bucket, tmp_path, capsys):
    from components.ingest.cli import main

    with pytest.raises(ConfigError, match=r"^--sha256 applies to a single file, but gs://data/ml"):
        localize("gs://data/ml", cache_dir=tmp_path / "cache", sha256="0" * 64)
    assert cache_entries(tmp_path / "cache") == []
    argv = ["--source", "movielens", "--input", "gs://data/ml", "--sha256", "0" * 64,
            "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--sha256" in errors[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prefix", ["evil", "dots"])
def test_gs_object_names_cannot_escape_the_cache(bucket, tmp_path, prefix):
    cache = tmp_path / "deep" / "cache"
    bad = "evil/../../escaped.txt" if prefix == "evil" else "dots/./a.txt"
    with pytest.raises(InputError, match=rf"^gs://data/{bad.replace('.', '[.]')}: unsafe"):
        localize(f"gs://data/{prefix}", cache_dir=cache)
    assert not list(tmp_path.rglob("escaped.txt")) and not list(tmp_path.rglob("a.txt"))
    assert cache_entries(cache) == []


def test_gs_short_download_is_refused(bucket, tmp_path, monkeypatch):
    from google.cloud.storage import Blob

    real = Blob.download_to_filename

    def short(self, filename, *args, **kwargs):
        real(self, filename, *args, **kwargs)
        Path(filename).write_bytes(Path(filename).read_bytes()[:5])

    monkeypatch.setattr(Blob, "download_to_filename", short)
    with pytest.raises(InputError, match=r"gs://data/ml/ml-100k/u.item: download incomplete"):
        localize("gs://data/ml/ml-100k/u.item", cache_dir=tmp_path / "cache")
    assert cache_entries(tmp_path / "cache") == []


def test_unreachable_gcs_gives_up_at_the_configured_deadline(tmp_path, monkeypatch, caplog):
    pytest.importorskip("google.cloud.storage")
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("DWLREC_GCS_TIMEOUT", "1.5")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="dwlrec.download"):
        with pytest.raises(InputError, match=r"cannot reach GCS at .* within 1\.5s") as failure:
            localize("gs://data/ml", cache_dir=tmp_path / "cache")
    assert time.monotonic() - started < 10
    text = str(failure.value)
    assert text.startswith("gs://data/ml: ") and endpoint in text and "DWLREC_GCS_TIMEOUT" in text
    assert "retrying" in caplog.text and endpoint in caplog.text  # says what it waits for
    assert cache_entries(tmp_path / "cache") == []
    monkeypatch.setenv("DWLREC_GCS_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match=r"DWLREC_GCS_TIMEOUT='soon': expected a positive"):
        localize("gs://data/ml", cache_dir=tmp_path / "cache")


def test_zip_magic_is_checked_for_complete_archives_only(tmp_path):
    # the helper itself: a complete archive passes, its first half does not
    from components.download.url import _content_problem

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.txt", "x" * 1000)
    head = archive.read_bytes()[:512]
    assert _content_problem("a.zip", "application/zip", head, str(archive)) is None
    archive.write_bytes(archive.read_bytes()[:50])
    assert "not a complete zip" in _content_problem("a.zip", "application/zip", head, str(archive))
