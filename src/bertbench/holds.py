"""Named points where a process can be told to stop and wait, so that a test kills it exactly there instead of
racing it with a clock (a fast machine finished runs before a polling test's kill landed; a slow one was killed
before the point the test meant).

`BERTBENCH_HOLD_AT=POINT:N` makes the process that reaches POINT for the Nth time (N counts what the point counts:
a training step, a partial save) write its pid to `BERTBENCH_HOLD_FILE` and wait there until it is killed, or
until the file is removed (then it goes on); a held process whose parent ends (a launcher killed around it), or
that nobody releases within 10 minutes, ends itself. Unset, a hold costs one dictionary lookup.

Points: `checkpoint` (the checkpoint of step N was written; rank 0), `checkpoint-write` (step N's checkpoint files
are written, not yet renamed into place), `importance-saved` (the prune importance pass saved its running sums for
the Nth time).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_ENV = "BERTBENCH_HOLD_AT"
HOLD_FILE_ENV = "BERTBENCH_HOLD_FILE"
POINTS = ("checkpoint", "checkpoint-write", "importance-saved")
MAX_HOLD_S = 600.0  # a test kills or releases a held process within seconds; after this long, nobody will
HELD_TOO_LONG = 124


def hold(point: str, count: int) -> None:
    """Wait here when the environment asks for this point and count, until killed or released (the file removed)."""
    wanted = os.environ.get(HOLD_ENV)
    if not wanted:
        return
    name, _, number = wanted.partition(":")
    if name != point or number != str(count):
        return
    marker = Path(os.environ.get(HOLD_FILE_ENV) or f"bertbench-hold-{os.getpid()}")
    temporary = marker.with_name(marker.name + ".tmp")
    temporary.write_text(f"{os.getpid()} {point} {count}\n")
    temporary.replace(marker)  # whole or absent: the test reads a complete line
    parent, deadline = os.getppid(), time.monotonic() + MAX_HOLD_S
    while marker.exists():
        if os.getppid() != parent or time.monotonic() > deadline:
            # what started it is gone (a launcher killed over our head) or nobody came: end, never linger
            os._exit(HELD_TOO_LONG)
        time.sleep(0.05)
