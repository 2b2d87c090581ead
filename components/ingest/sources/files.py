"""Where a source's data files are: a plain (maybe .gz) file, or a member of a zip archive.

- ``FileRef``: one such file (open, read as text by ``text.decode_text``'s rule, find a sibling);
- ``locate`` / ``list_files``: find files by name under a directory or inside a zip archive;
- ``find_input``: the one data file a reader opens (``--input`` itself, or found by name), or an
  ``InputError`` naming every file name the source accepts;
- ``items_file``: the items/metadata file (``--items``, else a sibling of the data file).
"""

from __future__ import annotations

import contextlib
import gzip
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from components.errors import InputError
from components.ingest.sources.text import decode_text


@dataclass(frozen=True)
class FileRef:
    """A data file: a plain (maybe .gz) file, or a member of a zip archive."""

    path: Path  # the file itself, or the zip archive holding it
    member: str | None = None  # path inside the zip archive

    @property
    def name(self) -> str:
        """How messages name the file (``archive.zip/member`` for zip members)."""
        return f"{self.path}/{self.member}" if self.member else str(self.path)

    @property
    def basename(self) -> str:
        name = Path(self.member or self.path).name
        return name[: -len(".gz")] if name.endswith(".gz") else name

    @contextlib.contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The file's bytes, gunzipped when its name ends in .gz."""
        with contextlib.ExitStack() as stack:
            if self.member is None:
                handle: IO[bytes] = stack.enter_context(open(self.path, "rb"))
            else:
                archive = stack.enter_context(zipfile.ZipFile(self.path))
                handle = stack.enter_context(archive.open(self.member))
            if (self.member or self.path.name).endswith(".gz"):
                handle = cast(IO[bytes], stack.enter_context(gzip.GzipFile(fileobj=handle)))
            try:
                yield handle
            except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                raise InputError(f"{self.name}: cannot read ({type(exc).__name__}: {exc})") from exc

    def read_bytes(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def read_text(self) -> str:
        """Whole file as text (``decode_text``'s rule; bad UTF-8 lines replaced and logged)."""
        return self.read_text_checked()[0]

    def read_text_checked(self) -> tuple[str, set[int]]:
        """Whole file as text and the line numbers holding invalid UTF-8 (see ``decode_text``)."""
        text, bad = decode_text(self.read_bytes(), self.name)
        return text, set(bad.tolist())

    def first_line(self) -> str:
        with self.open() as handle:
            return decode_text(handle.readline(), self.name, quiet=True)[0].rstrip("\r\n")

    def sibling(self, names: Sequence[str]) -> FileRef | None:
        """A file with one of ``names`` (or name.gz) in the same directory / zip folder."""
        for name in names:
            for candidate in (name, name + ".gz"):
                if self.member is None:
                    if (self.path.parent / candidate).is_file():
                        return FileRef(self.path.parent / candidate)
                else:
                    folder = str(Path(self.member).parent)
                    member = candidate if folder == "." else f"{folder}/{candidate}"
                    if member in _zip_members(self.path):
                        return FileRef(self.path, member)
        return None


def _zip_members(archive: Path) -> list[str]:
    try:
        with zipfile.ZipFile(archive) as handle:
            return [n for n in handle.namelist() if not n.endswith("/")]
    except zipfile.BadZipFile as exc:
        raise InputError(f"{archive}: not a readable zip archive ({exc})") from exc


def is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def locate(root: Path, names: Sequence[str]) -> FileRef | None:
    """Find the first of ``names`` (preference order; ``name.gz`` too) under ``root``.

    ``root`` is a directory (searched directly, one sub-directory deep, then inside any .zip in
    it) or a zip archive (members matched by base name, shallowest first).
    """
    wanted = [c for name in names for c in (name, name + ".gz")]
    if is_zip(root):
        return _locate_in_zip(root, wanted)
    if not root.is_dir():
        return None
    for candidate in wanted:
        if (root / candidate).is_file():
            return FileRef(root / candidate)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for candidate in wanted:
        for subdir in subdirs:
            if (subdir / candidate).is_file():
                return FileRef(subdir / candidate)
    for archive in sorted(root.glob("*.zip")):
        found = _locate_in_zip(archive, wanted)
        if found is not None:
            return found
    return None


def _locate_in_zip(archive: Path, wanted: Sequence[str]) -> FileRef | None:
    members = _zip_members(archive)
    for candidate in wanted:
        matches = [m for m in members if Path(m).name == candidate and "__MACOSX" not in m]
        if matches:
            return FileRef(archive, min(matches, key=lambda m: (m.count("/"), m)))
    return None


def list_files(root: Path) -> list[FileRef]:
    """Every file directly in ``root`` (a directory or a zip archive), sorted by name."""
    if is_zip(root):
        return [FileRef(root, m) for m in sorted(_zip_members(root)) if "__MACOSX" not in m]
    return [
        FileRef(p) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")
    ]


def find_input(path: Path, names: Sequence[str], missing: str) -> FileRef:
    """The data file a reader opens: ``path`` itself when it is a file (not a zip archive), else
    the first of ``names`` found under it (``locate``); none found: ``InputError``
    ``"{path}: {missing}"`` (``missing`` names every file the source accepts)."""
    if path.is_file() and not is_zip(path):
        return FileRef(path)
    found = locate(path, names)
    if found is None:
        raise InputError(f"{path}: {missing}")
    return found


def items_file(options: dict, data: FileRef, names: Sequence[str]) -> FileRef | None:
    """The items/metadata file: ``--items`` when given, else one of ``names`` next to ``data``."""
    if options.get("items"):
        return FileRef(Path(options["items"]))
    return data.sibling(names)
