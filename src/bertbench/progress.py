"""Progress bars (rich) with rate and ETA, on stderr so that stdout keeps only results, and the progress channel:
under `bertbench run` (BERTBENCH_PROGRESS_FILE set) every bar and phase of a case is also appended, as JSON lines,
to a file the parent reads and relays — whether or not the case draws bars itself."""

from __future__ import annotations

import contextlib
import json
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
CHANNEL_ENV = "BERTBENCH_PROGRESS_FILE"  # the case's progress events go here (set by `bertbench run`)
CHANNEL_EVERY_S = 1.0  # at most one bar update a second through the channel


def plain_every_s() -> float:
    """Seconds between plain progress lines off a terminal ($BERTBENCH_PROGRESS_EVERY, default 30)."""
    try:
        return max(0.0, float(os.environ.get(PLAIN_EVERY_ENV, "30") or 30))
    except ValueError:
        return 30.0


class Channel:
    """Appends progress events to the file `run` reads (one JSON object a line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.last = 0.0

    def emit(self, event: dict[str, object], force: bool = False) -> None:
        """Write one event (bar updates at most every CHANNEL_EVERY_S unless forced); never fails the job."""
        now = time.time()
        if not force and now - self.last < CHANNEL_EVERY_S:
            return
        self.last = now
        with contextlib.suppress(OSError, TypeError, ValueError), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"t": now, **event}, default=str) + "\n")


def channel() -> Channel | None:
    """The progress channel of this process, when `run` asked for one (rank 0 only under torchrun)."""
    path = os.environ.get(CHANNEL_ENV)
    if not path or os.environ.get("RANK", "0") != "0":
        return None
    global _CHANNEL
    if _CHANNEL is None or _CHANNEL.path != path:
        _CHANNEL = Channel(path)
    return _CHANNEL


_CHANNEL: Channel | None = None


def announce(phase: str) -> None:
    """A step of the job without a count (loading, exporting, a LoadGen test): relayed to `run`, if it listens."""
    relay = channel()
    if relay is not None:
        relay.emit({"phase": phase}, force=True)


def _relayed(
    advance: Callable[..., None], description: str, total: int, initial: dict[str, object]
) -> Iterator[Callable[..., None]]:
    """`advance` that also reports the bar through the channel (start, at most every second, end)."""
    relay = channel()
    if relay is None:
        yield advance
        return
    state = {"done": 0, "fields": dict(initial)}
    relay.emit({"bar": description, "done": 0, "total": total, "fields": state["fields"]}, force=True)

    def relayed(n: int = 1, **info: object) -> None:
        advance(n, **info)
        state["done"] += n
        state["fields"].update(info)
        relay.emit({"bar": description, "done": state["done"], "total": total, "fields": state["fields"]})

    try:
        yield relayed
    finally:
        event = {"bar": description, "done": state["done"], "total": total, "fields": state["fields"], "end": True}
        relay.emit(event, force=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _plain_lines(
    description: str, total: int, fields: str, initial: dict[str, object]
) -> Iterator[Callable[..., None]]:
    """`advance` that prints `train 120/400 30% elapsed 0:01:02 eta 0:02:25 loss 7.1` now and then."""
    every = plain_every_s()
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
    "loss {task.fields[loss]:.4f}"; `initial` gives those fields their first values. Under `bertbench run` the
    bar also goes through the progress channel, drawn or not (`enabled`)."""
    with _drawn(description, total, enabled, fields, initial or {}) as advance:
        yield from _relayed(advance, description, total, initial or {})


@contextlib.contextmanager
def _drawn(
    description: str, total: int, enabled: bool, fields: str, initial: dict[str, object]
) -> Iterator[Callable[..., None]]:
    if not enabled:
        yield lambda n=1, **info: None
        return
    if not stderr_console.is_terminal:
        # CI logs, nohup, a pipe: no redrawn bar, a plain line every PLAIN_EVERY_S seconds instead.
        yield from _plain_lines(description, total, fields, initial)
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
        task = progress.add_task(description, total=total, **initial)

        def advance(n: int = 1, **info: object) -> None:
            progress.update(task, advance=n, **info)

        yield advance
