"""Remote inputs (SPEC §3): ``gs://`` through a local GCS emulator, ``http(s)://`` through a
local HTTP server, both on 127.0.0.1 — ``components.download.localize`` and ingest from remote URIs.

Failed reads (a missing object or bucket, a 404, a sha256 mismatch) must be clear errors that
leave nothing behind: no half-downloaded cache file, no (partial) output directory.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import fixtures_formats as fx
import pytest

from components.download import localize
from components.errors import InputError
from components.schema import load_dataset
from tests.gcs_emulator import gcs_emulator

SMALL = {"min_user_interactions": 3, "min_item_interactions": 1}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- gs://


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """A GCS emulator on 127.0.0.1 with bucket ``data`` holding ml-100k files under ``ml/``."""
    with gcs_emulator() as client:
        bucket = client.create_bucket("data")
        files = fx.write_ml100k(tmp_path_factory.mktemp("gcs-src"))
        for name in ("u.data", "u.item", "u.genre"):
            bucket.blob(f"ml/ml-100k/{name}").upload_from_filename(str(files / name))
        archive = fx.write_ml100k_zip(tmp_path_factory.mktemp("gcs-zip"))
        bucket.blob("archives/ml-100k.zip").upload_from_filename(str(archive))
        yield {"files": files, "archive": archive}


def test_gs_prefix_and_object_are_localized(gcs, tmp_path):
    directory = localize("gs://data/ml", cache_dir=tmp_path)
    assert (directory / "ml-100k" / "u.data").read_bytes() == (gcs["files"] / "u.data").read_bytes()
    single = localize("gs://data/ml/ml-100k/u.item", cache_dir=tmp_path)
    assert single.name == "u.item" and single.read_bytes() == (gcs["files"] / "u.item").read_bytes()


def test_ingest_from_gs_prefix_and_zip(gcs, tmp_path):
    from components.ingest import ingest

    for uri in ("gs://data/ml", "gs://data/archives/ml-100k.zip"):
        out = tmp_path / uri.rsplit("/", 1)[-1]
        manifest = ingest("movielens", out, uri, cache_dir=tmp_path / "cache", **SMALL)
        assert manifest["input"] == uri
        assert load_dataset(out).n_users == fx.N_USERS


@pytest.mark.parametrize("uri", ["gs://data/no/such/prefix", "gs://no-such-bucket/ml"])
def test_unreadable_gs_path_is_a_clear_error_and_writes_nothing(gcs, tmp_path, uri):
    from components.ingest import ingest

    with pytest.raises(InputError, match=uri.replace(".", r"\.")):
        localize(uri, cache_dir=tmp_path / "cache")
    out = tmp_path / "out"
    with pytest.raises(InputError):
        ingest("movielens", out, uri, cache_dir=tmp_path / "cache", **SMALL)
    assert not out.exists()
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


# --------------------------------------------------------------------------- http(s)://


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A plain HTTP server on 127.0.0.1 serving an official-layout ml-100k.zip."""
    root = tmp_path_factory.mktemp("web")
    archive = fx.write_ml100k_zip(root)
    handler = functools.partial(CountingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip",
            "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
            "archive": archive,
        }
    finally:
        server.shutdown()
        server.server_close()


def test_url_is_downloaded_once_into_the_cache(web, tmp_path):
    CountingHandler.requests.clear()
    first = localize(web["url"], cache_dir=tmp_path, sha256=web["sha256"])
    assert first.name == "ml-100k.zip"
    assert first.read_bytes() == web["archive"].read_bytes()
    again = localize(web["url"], cache_dir=tmp_path, sha256=web["sha256"])
    assert again == first and CountingHandler.requests == ["/ml-100k.zip"]  # one download


def test_ingest_from_url(web, tmp_path):
    from components.ingest import ingest

    manifest = ingest(
        "movielens", tmp_path / "out", web["url"], cache_dir=tmp_path / "cache",
        sha256=web["sha256"], **SMALL,
    )  # fmt: skip
    assert manifest["counts"]["users"] == fx.N_USERS
    assert load_dataset(tmp_path / "out").n_items == fx.N_ITEMS


def test_sha256_mismatch_keeps_no_download_and_no_output(web, tmp_path):
    from components.ingest import ingest

    out = tmp_path / "out"
    ingest("movielens", out, str(fx.write_ml100k(tmp_path / "local")), **SMALL)
    before = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="sha256 mismatch"):
        ingest("movielens", out, web["url"], cache_dir=tmp_path / "cache", sha256="0" * 64, **SMALL)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing cached
    after = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and "train_view/part-00000.parquet" in after  # old output untouched


def test_failed_download_is_a_clear_error(web, tmp_path):
    missing = web["url"].replace("ml-100k.zip", "ml-1m.zip")
    with pytest.raises(InputError, match=r"ml-1m\.zip: download failed.*404"):
        localize(missing, cache_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    closed = f"http://127.0.0.1:{free_port()}/ml-100k.zip"  # nothing listens there
    with pytest.raises(InputError, match="download failed"):
        localize(closed, cache_dir=tmp_path)


@pytest.fixture(scope="module")
def tls_web(tmp_path_factory, web):
    """An HTTPS server on 127.0.0.1 (self-signed certificate made with openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot make a test certificate")
    root = Path(web["archive"]).parent
    keys = tmp_path_factory.mktemp("tls")
    cert, key = keys / "cert.pem", keys / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    handler = functools.partial(CountingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"https://127.0.0.1:{server.server_address[1]}/ml-100k.zip", "cert": cert}
    finally:
        server.shutdown()
        server.server_close()


def test_https_download_verifies_the_certificate(tls_web, web, tmp_path, monkeypatch):
    # an untrusted (self-signed) certificate is a download error, and nothing is cached
    with pytest.raises(InputError, match=r"https://127\.0\.0\.1.*download failed"):
        localize(tls_web["url"], cache_dir=tmp_path / "untrusted")
    assert not [p for p in (tmp_path / "untrusted").rglob("*") if p.is_file()]
    # trusted: downloaded and checked like http://
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_web["cert"]))
    path = localize(tls_web["url"], cache_dir=tmp_path / "trusted", sha256=web["sha256"])
    assert path.read_bytes() == web["archive"].read_bytes()
