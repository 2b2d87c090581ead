"""What every step's CLI shares: logging set-up and turning DwlrecError into one clear line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from components.errors import DwlrecError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's line breaks."""


def run_cli(
    body: Callable[[argparse.Namespace], object],
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
) -> int:
    """Parse ``argv``, run ``body``; a DwlrecError becomes ``error: …`` on stderr and exit 2."""
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
    return 0
