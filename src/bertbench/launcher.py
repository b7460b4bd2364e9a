"""Every process bertbench starts, started here: the command lines of a case (`python -m bertbench …`, or torchrun
for several processes or nodes: one builder, one spelling of its flags), the case's processes (each in its own
session, so that stopping one stops everything it started), and the benchmark's spawned instances. Whatever is
started dies with its starter, even when the starter is SIGKILLed (lifetime.die_with_parent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from bertbench.lifetime import die_with_parent

RENDEZVOUS_PORT = 29400  # torchrun's c10d default
STOP_TIMEOUT_S = 60.0  # how long a stopped case may take to save nothing half-written before it is killed
POLL_S = 0.5


def python_command(module: str, args: list[str], tethered: bool = False) -> list[str]:
    """`python -m MODULE ARGS…`; `tethered` makes the process die with the one that starts it."""
    python = [sys.executable, "-m", "bertbench.lifetime"] if tethered else [sys.executable]
    return [*python, "-m", module, *args]


def torchrun_command(
    args: list[str],
    processes: int,
    *,
    nodes: int = 1,
    node_rank: int = 0,
    endpoint: str | None = None,
    run_id: str | None = None,
    tethered: bool = False,
) -> list[str]:
    """torchrun starting `processes` workers of `python -m bertbench ARGS…`: `--standalone` on one node, or one node
    of `nodes` meeting at the c10d rendezvous `endpoint` (HOST:PORT) under `run_id`."""
    launch = ["torch.distributed.run"]
    if nodes == 1:
        launch.append("--standalone")
    else:
        if endpoint is None:
            raise ValueError("a torchrun command across nodes needs the rendezvous endpoint")
        launch += ["--nnodes", str(nodes), "--node-rank", str(node_rank)]
        launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id or "bertbench"]
    launch += ["--nproc-per-node", str(processes), "-m", "bertbench"]
    return python_command(launch[0], [*launch[1:], *args], tethered)


class CaseProcesses:
    """The processes of one case (one per node), their output into one log, stopped together."""

    def __init__(self, lines: list[list[str]], log: IO[str], env: Mapping[str, str]) -> None:
        self.processes = [
            subprocess.Popen(line, stdout=log, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)
            for line in lines
        ]

    def wait(self, tick: Callable[[], None] = lambda: None) -> int:
        """Wait for every process, calling `tick` twice a second. The first to fail stops the others (they would
        wait for it until the process group's timeout); otherwise the last exit code."""
        while True:
            codes = [process.poll() for process in self.processes]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                self.stop(signal.SIGTERM, wait=True)
                return failed[0]
            if all(code == 0 for code in codes):
                return 0
            time.sleep(POLL_S)
            tick()

    def stop(self, sig: int = signal.SIGTERM, wait: bool = True, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send `sig` to each process's whole session (torchrun's workers too); with `wait`, wait for them, killing
        one that does not end within `timeout` seconds."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
        if not wait:
            return
        for process in self.processes:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _tethered_target(parent_pid: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid)
    target(*args)


def spawn_tethered(context: Any, target: Callable[..., None], args: tuple[Any, ...], env: Mapping[str, str]) -> Any:
    """A multiprocessing child (of `context`, e.g. spawn) running `target(*args)` with `env` added to its
    environment, dying with this process."""
    saved = dict(os.environ)
    os.environ.update(env)  # a spawned child inherits the environment at start()
    try:
        process = context.Process(target=_tethered_target, args=(os.getpid(), target, args), daemon=True)
        process.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return process
