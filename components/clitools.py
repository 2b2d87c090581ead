"""What every step's CLI shares: logging set-up and turning DwlrecError into one clear line."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable

from components.errors import DwlrecError

# an OSError the user can act on (full/read-only disk, permissions): one line, not a traceback
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's line breaks; no "(default: None)": an option
    without a default says what happens in its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def add_output_arguments(parser: argparse.ArgumentParser, what: str = "output directory") -> None:
    """``--output`` and ``--overwrite``, the same for every step (the rule: components.io)."""
    parser.add_argument(
        "--output",
        required=True,
        help=f"{what}; written atomically, and replaces an existing directory only when that is "
        "a previous output of this step",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output even when it holds something else (a file, other files, another "
        "step's output); never one of the step's inputs",
    )


def run_cli(
    body: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
) -> int:
    """Parse ``argv``, run ``body``; a DwlrecError (or a full/read-only disk, a permission
    error) becomes ``error: …`` on stderr and exit 2; Ctrl-C one line and exit 130."""
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        body(args)
    except DwlrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in USER_ERRNOS:
            raise
        print(f"error: {exc.filename or 'output'}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
