"""Progress bars (rich) with rate and ETA, on stderr so that stdout keeps only results."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(
    description: str,
    total: int,
    enabled: bool = True,
    fields: str = "",
    initial: dict[str, object] | None = None,
) -> Iterator[Callable[..., None]]:
    """Yield `advance(n, **info)`.

    `fields` is a rich format string over the task's fields shown after the bar, e.g.
    "loss {task.fields[loss]:.4f}"; `initial` gives those fields their first values.
    """
    if not enabled:
        yield lambda n=1, **info: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    if fields:
        columns.append(TextColumn(fields))
    # Redraw rarely when not on a terminal (CI logs) so the log does not fill with bars.
    refresh = 4 if sys.stderr.isatty() else 0.2
    with Progress(*columns, console=stderr_console, refresh_per_second=refresh, transient=False) as progress:
        task = progress.add_task(description, total=total, **(initial or {}))

        def advance(n: int = 1, **info: object) -> None:
            progress.update(task, advance=n, **info)

        yield advance
