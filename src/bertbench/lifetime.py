"""Process lifetimes: a child that dies with its parent (even when the parent is SIGKILLed), and whether a process
recorded earlier (pid + start time, so a reused pid is not mistaken for it) still runs on this host."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent ends (Linux; elsewhere nothing happens). If
    the parent is already gone (it died before the request), end now with the same signal."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def hostname() -> str:
    """This machine's name, as records and the store keep it."""
    return socket.gethostname()


def start_time(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat field 22); None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def still_running(pid: int, started: str | None) -> bool:
    """Whether the process recorded as (`pid`, `started`) runs on this host now."""
    now = start_time(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return started is None  # alive but without /proc: trust the pid only when no start time was recorded
    return started is None or now == started


TETHER_ENV = "BERTBENCH_TETHERED"  # set for the processes of a `run` case: each dies with its parent


def tether_from_environment() -> None:
    """Under `bertbench run` (TETHER_ENV set), die with the parent process: a case, and every torchrun worker of
    a case, ends when what started it ends, even by SIGKILL."""
    if os.environ.get(TETHER_ENV) == "1":
        die_with_parent(os.getppid())


def _tethered_main(argv: list[str]) -> None:
    """`python -m bertbench.lifetime -m MODULE ARGS…`: run MODULE as `python -m` would, tethered to the parent."""
    import runpy
    import sys

    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python -m bertbench.lifetime -m MODULE [ARGS...]")
    die_with_parent(os.getppid())
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import sys

    _tethered_main(sys.argv[1:])
