"""Errors the user sees. Every message names the file, line or parameter at fault."""


class DwlrecError(Exception):
    """Base class: the CLIs print these as one clear line and exit with status 2."""


class InputError(DwlrecError):
    """Bad input data: missing or malformed files, an empty result after filtering."""


class ConfigError(DwlrecError):
    """A bad parameter value or an incompatible combination of options/files."""


class OutputError(DwlrecError):
    """An output path that must not or cannot be written (an input, another tool's files, a URL,
    a read-only or full disk)."""
