"""Bad-row accounting: ``BadRows`` counts the malformed rows a reader skips and keeps the first
few as ``"FILE:LINE: reason"`` examples (``RawData.bad_rows`` / ``bad_examples``)."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("dwlrec.ingest")

MAX_EXAMPLES = 5


@dataclass
class BadRows:
    """Counts malformed rows; keeps the first few as ``"FILE:LINE: reason"`` (file order)."""

    count: int = 0
    _files: list[str] = field(default_factory=list)
    _examples: list[tuple[int, int, str]] = field(default_factory=list)

    def add(self, file: str, line: int, reason: str) -> None:
        self.count += 1
        if file not in self._files:
            self._files.append(file)
        key = (self._files.index(file), int(line), reason)
        if len(self._examples) < MAX_EXAMPLES or key < self._examples[-1]:
            bisect.insort(self._examples, key)
            del self._examples[MAX_EXAMPLES:]

    def add_many(self, file: str, lines: np.ndarray, reasons: Sequence[str]) -> None:
        """Record ``len(lines)`` bad rows; only the first few need a reason string."""
        first = np.argsort(lines, kind="stable")[:MAX_EXAMPLES]
        for position in first:
            self.add(file, int(lines[position]), reasons[position])
        self.count += len(lines) - len(first)

    def merge(self, other: BadRows) -> None:
        for file, line, reason in other._examples:
            self.add(other._files[file], line, reason)
        self.count += other.count - len(other._examples)

    @property
    def examples(self) -> list[str]:
        return [f"{self._files[f]}:{line}: {reason}" for f, line, reason in self._examples]

    def log_skipped(self, file: str, what: str) -> None:
        """Warn that ``file``'s malformed ``what`` rows (e.g. "item row") were skipped, if any."""
        if self.count:
            log.warning(
                "%s: skipped %d malformed %s(s); first: %s",
                file,
                self.count,
                what,
                self.examples[0],
            )
