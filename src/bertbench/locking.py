"""One writer at a time: an exclusive lock on a file (flock), which says who holds it. The kernel releases it when
the holder ends, however it ends (SIGKILL included), so a lock is never left behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from bertbench.console import info
from bertbench.errors import BertbenchError
from bertbench.lifetime import hostname


class Busy(BertbenchError):
    """Another process holds the lock (try again later, or wait)."""

    exit_code = 75  # EX_TEMPFAIL


def _holder(path: Path) -> str:
    try:
        facts = json.loads(path.read_text())
        return f"pid {facts['pid']} on {facts['host']} (since {facts['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def exclusive(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block. Held elsewhere: Busy naming the holder,
    or, with `wait`, one notice and a wait until it is free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise Busy(f"{what} is in use by {holder}: wait for it to end, or pass --wait") from None
            info(f"{what} is in use by {holder}: waiting for it to end")
            fcntl.flock(fd, fcntl.LOCK_EX)
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": hostname(), "since": since}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
