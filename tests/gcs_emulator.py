"""A Google Cloud Storage emulator on 127.0.0.1 for the tests (gcp-storage-emulator, in memory):
``STORAGE_EMULATOR_HOST`` points at it while the context is open, and is restored after."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gcs_emulator() -> Iterator:
    """A ``google.cloud.storage.Client`` talking to a fresh in-memory emulator (the test is
    skipped when gcp-storage-emulator is not installed)."""
    pytest.importorskip("gcp_storage_emulator")
    from gcp_storage_emulator.server import create_server
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield storage.Client(credentials=AnonymousCredentials(), project="dwlrec-test")
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        server.stop()
