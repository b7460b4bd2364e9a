"""One-line notices and warnings on stderr, for every layer (results tables live in `results.console`)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; a notice stays one line however long.
notice_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    notice_console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    """A one-line notice on stderr."""
    notice_console.print(escape(message), soft_wrap=True)
