"""Progress bars (rich) with rate and ETA, on stderr so that stdout keeps only results."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

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
PLAIN_EVERY_ENV = "BERTBENCH_PROGRESS_EVERY"  # seconds between plain progress lines (default 30)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _plain_lines(
    description: str, total: int, fields: str, initial: dict[str, object]
) -> Iterator[Callable[..., None]]:
    """`advance` that prints `train 120/400 30% elapsed 0:01:02 eta 0:02:25 loss 7.1` now and then."""
    every = float(os.environ.get(PLAIN_EVERY_ENV, "30") or 30)
    start = last = time.monotonic()
    state = {"done": 0, "fields": dict(initial)}

    def line() -> str:
        done, elapsed = state["done"], time.monotonic() - start
        eta = _duration(elapsed / done * (total - done)) if done else "?"
        extra = fields.format(task=SimpleNamespace(fields=state["fields"])) if fields else ""
        share = f"{100 * done / total:.0f}%" if total else "-"
        return f"{description} {done}/{total} {share} elapsed {_duration(elapsed)} eta {eta} {extra}".rstrip()

    def advance(n: int = 1, **info: object) -> None:
        nonlocal last
        state["done"] += n
        state["fields"].update(info)
        now = time.monotonic()
        if now - last >= every:
            last = now
            print(line(), file=sys.stderr, flush=True)

    yield advance
    print(line(), file=sys.stderr, flush=True)


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
    if not stderr_console.is_terminal:
        # CI logs, nohup, a pipe: no redrawn bar, a plain line every PLAIN_EVERY_S seconds instead.
        yield from _plain_lines(description, total, fields, initial or {})
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
    with Progress(*columns, console=stderr_console, refresh_per_second=4, transient=False) as progress:
        task = progress.add_task(description, total=total, **(initial or {}))

        def advance(n: int = 1, **info: object) -> None:
            progress.update(task, advance=n, **info)

        yield advance
