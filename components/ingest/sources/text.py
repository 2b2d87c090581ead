"""The text encoding rule every reader shares (``decode_text``).

A file is UTF-8 (a leading BOM is dropped). A file that is not valid UTF-8 is read as latin-1 only
when it holds no valid multi-byte UTF-8 sequence at all (old MovieLens/HetRec files); otherwise it
is a UTF-8 file with a few bad bytes, which are replaced (U+FFFD) and *their lines counted as
malformed*, named ``FILE:LINE`` (never a whole file turned into latin-1 mojibake).
"""

from __future__ import annotations

import codecs
import logging
import threading

import numpy as np

from components.ingest.sources.bad_rows import MAX_EXAMPLES

log = logging.getLogger("dwlrec.ingest")

_DECODE_ERRORS = threading.local()


def _record_decode_error(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)  # registered for decoding only
    _DECODE_ERRORS.positions.append(exc.start)
    return "\ufffd", exc.end


codecs.register_error("dwlrec-record", _record_decode_error)


def decode_text(data: bytes, name: str, *, quiet: bool = False) -> tuple[str, np.ndarray]:
    """``data`` as text, and the sorted 1-based line numbers holding invalid UTF-8.

    UTF-8 (a leading BOM dropped). Not valid UTF-8: latin-1 when the bytes hold no valid
    multi-byte UTF-8 sequence, or fewer of them than invalid bytes (a legacy single-byte file:
    no bad lines); otherwise a UTF-8 file with stray bytes, replaced by U+FFFD, their lines
    returned so that callers count them as malformed.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8"), np.zeros(0, dtype=np.int64)
    except UnicodeDecodeError:
        pass
    _DECODE_ERRORS.positions = []
    try:
        text = data.decode("utf-8", "dwlrec-record")
        positions = np.array(_DECODE_ERRORS.positions, dtype=np.int64)
    finally:
        _DECODE_ERRORS.positions = []
    raw = np.frombuffer(data, dtype=np.uint8)
    n_high = int(np.count_nonzero(raw >= 0x80))
    valid_multibyte = len(text) - (len(data) - n_high) - len(positions)
    if valid_multibyte < len(positions):
        if not quiet:
            log.info("%s: not UTF-8, decoding as latin-1", name)
        return data.decode("latin-1"), np.zeros(0, dtype=np.int64)
    newlines = np.flatnonzero(raw == 0x0A)
    lines = np.unique(np.searchsorted(newlines, positions, side="right") + 1)
    if not quiet:
        shown = ", ".join(f"{name}:{n}" for n in lines[:MAX_EXAMPLES])
        log.warning(
            "%s: UTF-8 with %d invalid byte(s) on %d line(s) (%s%s): those lines are malformed",
            name,
            len(positions),
            len(lines),
            shown,
            ", …" if len(lines) > MAX_EXAMPLES else "",
        )
    return text, lines
