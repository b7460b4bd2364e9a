"""Several inference instances, each a spawned process pinned to its own cores, behind one queue.

The launcher starts them (each dies with this process). The parent never computes: it queues batches (any idle
instance takes the next one), and a collector thread hands finished batches back to LoadGen. Instances start one
after the other, so the first fills the caches the others then read (exported and quantized artifacts are built
once).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from bertbench.bench.worker import WorkerSpec, serve
from bertbench.errors import BertbenchError
from bertbench.launcher import spawn_tethered

READY_TIMEOUT_S = 1800.0  # exporting and quantizing bert-large on 2 cores takes minutes
Done = Callable[[list[int], list[bytes] | None], None]


class InstanceError(BertbenchError):
    """An instance failed (its one-line reason is the message)."""


class InstancePool:
    """N pinned worker processes serving one task queue."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.specs = specs
        self.context = mp.get_context("spawn")
        self.tasks = self.context.Queue()
        self.results = self.context.Queue()
        self.barrier = self.context.Barrier(len(specs))
        self.processes: list[Any] = []
        self.ready: dict[int, dict[str, Any]] = {}
        self.failure: str | None = None
        self._collector: threading.Thread | None = None
        self._collecting = False

    # ---- life cycle ------------------------------------------------------------------------------------------

    def start(self, on_started: Callable[[int], None] = lambda i: None) -> None:
        """Spawn the instances one by one; each must report ready (or its error) before the next starts."""
        for spec in self.specs:
            process = spawn_tethered(self.context, serve, (spec, self.tasks, self.results, self.barrier), spec.env)
            self.processes.append(process)
            message = self._next(("ready",), READY_TIMEOUT_S)
            _, instance, pid, prepare_s, describe = message
            self.ready[instance] = {"pid": pid, "prepare_s": prepare_s, "runtime": describe}
            on_started(instance)

    def close(self) -> None:
        """Stop every instance and wait for it."""
        for process in self.processes:
            if process.is_alive():
                self.tasks.put(("stop",))
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        self.tasks.close()
        self.results.close()

    def pids(self) -> list[int]:
        """This process and the live instances (whose CPU time is ours, not contention)."""
        return [os.getpid(), *(p.pid for p in self.processes if p.is_alive())]

    # ---- control (between tests, no collector running) ---------------------------------------------------------

    def _next(self, kinds: tuple[str, ...], timeout: float) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.results.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise InstanceError(f"no answer from the instances within {timeout:.0f} s") from None
                continue
            if message[0] == "error":
                raise InstanceError(f"instance {message[1]}: {message[2]}")
            if message[0] in kinds:
                return message

    def _check_alive(self) -> None:
        for spec, process in zip(self.specs, self.processes, strict=False):
            if not process.is_alive():
                raise InstanceError(
                    f"instance {spec.instance} (pid {process.pid}) died with exit code {process.exitcode}"
                )

    def _broadcast(self, message: tuple, reply: str) -> list[tuple]:
        for _ in self.processes:
            self.tasks.put(message)
        replies = [self._next((reply,), READY_TIMEOUT_S) for _ in self.processes]
        return sorted(replies, key=lambda m: m[1])

    def warmup(self, batch_size: int, padding: str, sort: bool) -> list[tuple[float, float]]:
        """Every instance warms up at this batch size and estimates its rate on batches padded by `padding` (and
        sorted by length when the test sorts them): [(warm-up s, estimated samples/s)] by instance."""
        return [(m[2], m[3]) for m in self._broadcast(("warmup", batch_size, padding, sort), "warm")]

    def stats(self) -> list[dict[str, Any]]:
        """Every instance's counters since the last call (then reset)."""
        return [m[2] for m in self._broadcast(("stats",), "stats")]

    # ---- serving (during a test) -----------------------------------------------------------------------------

    def submit(self, items: list[tuple[int, int]], batch_size: int, accuracy: bool, padding: str) -> None:
        """Queue one batch of (LoadGen sample id, QSL index), padded as `padding` says."""
        self.tasks.put(("run", items, batch_size, accuracy, padding))

    def drain(self) -> list[int]:
        """Remove queued batches nobody will serve (after a failure); their sample ids."""
        ids: list[int] = []
        with contextlib.suppress(queue.Empty):
            while True:
                message = self.tasks.get_nowait()
                if message[0] == "run":
                    ids += [sample_id for sample_id, _ in message[1]]
        return ids

    def start_collecting(self, on_done: Done, on_failure: Callable[[str], None]) -> None:
        """Hand every finished batch to `on_done` from a background thread until stop_collecting()."""
        self._collecting = True

        def collect() -> None:
            while self._collecting:
                try:
                    message = self.results.get(timeout=0.5)
                except queue.Empty:
                    try:
                        self._check_alive()
                    except InstanceError as exc:
                        self.failure = str(exc)
                        on_failure(self.failure)
                    continue
                if message[0] == "done":
                    on_done(message[1], message[2])
                elif message[0] == "error":
                    self.failure = f"instance {message[1]}: {message[2]}"
                    on_failure(self.failure)

        self._collector = threading.Thread(target=collect, name="bertbench-collector", daemon=True)
        self._collector.start()

    def stop_collecting(self) -> None:
        """End the collector thread (after LoadGen has seen every sample complete)."""
        self._collecting = False
        if self._collector is not None:
            self._collector.join()
            self._collector = None
