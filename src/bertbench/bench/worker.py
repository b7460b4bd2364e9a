"""One inference instance: a process pinned to its own cores, serving batches that the parent's SUT queues.

The module imports only the standard library at the top: a spawned child sets its affinity and environment
(`--env KEY=VALUE`, thread knobs) before torch or onnxruntime are imported.
"""

from __future__ import annotations

import collections
import os
import queue
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ESTIMATE_BATCHES, ESTIMATE_S = 8, 0.5  # the warm-up's rate estimate: this many batches, for at most this long


@dataclass
class WorkerSpec:
    """Everything one instance needs to build its runtime (picklable: it crosses a spawn)."""

    instance: int
    cores: list[int]
    threads: int
    env: dict[str, str]
    model: str
    allow_pickle: bool
    seed: int
    task: str
    task_options: Any
    data: Path
    max_samples: int | None
    cache_dir: Path | None
    device: str
    runtime: Any  # RuntimeOptions
    calibration_data: Path | None = None
    calibration_samples: int = 1000
    max_seq_length: int = 384
    log_format: Any = None  # codec.LogFormat of the accuracy log (MLPerf's byte layout)


class _Instance:
    """The loaded model, features and prepared runtime of one instance, and its counters."""

    def __init__(self, spec: WorkerSpec) -> None:
        import numpy as np

        from bertbench.bench.setup import load_model_and_data, start_runtime
        from bertbench.cache import Cache
        from bertbench.calibration import calibration_sample
        from bertbench.hardware import configure_threads
        from bertbench.runtimes.options import Placement
        from bertbench.tasks.batching import padded_length

        self.np, self.padded_length = np, padded_length
        self.spec = spec
        threads = configure_threads(spec.threads)
        cache = Cache(spec.cache_dir)
        work = load_model_and_data(spec, cache)
        self.task, self.dataset, self.config = work.task, work.dataset, work.loaded.model.config
        calibration = None
        if spec.runtime.static_int8:
            calibration = calibration_sample(
                self.task,
                work.loaded.tokenizer,
                spec.task_options,
                cache,
                Path(spec.calibration_data),
                spec.calibration_samples,
                spec.seed,
            )
        placement = Placement(spec.device, threads, spec.cache_dir, calibration)
        self.runtime, self.prepare_s = start_runtime(work.loaded, spec.runtime, placement)
        self.lengths = np.asarray(self.dataset.lengths)
        self.reset()

    def reset(self) -> None:
        """Zero the counters (after warm-up, after each test)."""
        self.samples = self.tokens = self.padded_tokens = self.tokens_x_len = 0
        self.busy_s = 0.0

    def run(self, rows: list[int], padding: str) -> dict[str, Any]:
        """One batch: pad, infer, reduce; count what was computed."""
        rows_array = self.np.asarray(rows)
        lengths = self.lengths[rows_array]
        seq_len = self.padded_length(lengths, padding, self.spec.max_seq_length)
        start = time.perf_counter()
        outputs = self.task.reduce_outputs(self.runtime.infer(self.dataset.model_inputs(rows_array, seq_len)))
        self.busy_s += time.perf_counter() - start
        self.samples += len(rows)
        self.tokens += int(lengths.sum())
        self.padded_tokens += len(rows) * seq_len
        self.tokens_x_len += len(rows) * seq_len * seq_len
        return outputs

    def warmup(self, batch_size: int, padding: str, sort: bool) -> tuple[float, float]:
        """Run the longest batch once (untimed shapes), then time up to ESTIMATE_BATCHES batches of seeded random rows
        (for ESTIMATE_S at most, one batch at least), padded as the test will pad them and, when the test sorts its
        queries by length (`sort`), sorted: (warm-up s, samples/s). One unsorted batch padded to its longest row
        under-estimated a fast model's Offline rate by 3.7x, and its test came out INVALID (too short)."""
        np = self.np
        order = np.argsort(-self.lengths, kind="stable")
        start = time.perf_counter()
        self.run([int(r) for r in order[:batch_size]], "longest")
        warmup_s = time.perf_counter() - start
        rng = np.random.default_rng(0)
        count = min(batch_size * ESTIMATE_BATCHES, len(self.lengths))
        rows = rng.choice(len(self.lengths), count, replace=False)
        if sort:
            rows = rows[np.argsort(-self.lengths[rows], kind="stable")]
        done, start = 0, time.perf_counter()
        while done < len(rows) and (done == 0 or time.perf_counter() - start < ESTIMATE_S):
            batch = rows[done : done + batch_size]
            self.run([int(r) for r in batch], padding)
            done += len(batch)
        estimate = done / (time.perf_counter() - start)
        self.reset()
        return warmup_s, estimate

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset, with the FLOPs of the token positions fed."""
        return {
            "instance": self.spec.instance,
            "pid": os.getpid(),
            "cores": self.spec.cores,
            "threads": self.spec.threads,
            "samples": self.samples,
            "tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
            "flops": self.config.forward_flops(self.padded_tokens, self.tokens_x_len),
            "busy_s": self.busy_s,
        }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def serve(spec: WorkerSpec, tasks: Any, results: Any, barrier: Any) -> None:
    """Process entry point (started by the launcher, tethered to the parent): pin, build, report ready, then serve
    messages until "stop"."""
    os.environ.update(spec.env)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, spec.cores)
    try:
        instance = _Instance(spec)
    except BaseException as exc:  # reported to the parent as one line; the parent decides the exit
        from bertbench.errors import BertbenchError

        detail = str(exc) if isinstance(exc, BertbenchError) else _one_line(exc)
        results.put(("error", spec.instance, detail, traceback.format_exc()))
        return
    results.put(("ready", spec.instance, os.getpid(), instance.prepare_s, instance.runtime.describe()))
    pending: collections.deque = collections.deque()
    while True:
        message = pending.popleft() if pending else tasks.get()
        kind = message[0]
        try:
            if kind == "stop":
                return
            if kind == "warmup":
                warmup_s, estimate = instance.warmup(*message[1:])
                results.put(("warm", spec.instance, warmup_s, estimate))
                barrier.wait(timeout=600)
            elif kind == "stats":
                results.put(("stats", spec.instance, instance.stats()))
                instance.reset()
                barrier.wait(timeout=600)
            elif kind == "run":
                _serve_batch(instance, message, tasks, results, pending)
        except BaseException as exc:
            results.put(("error", spec.instance, _one_line(exc), traceback.format_exc()))
            return


def _serve_batch(instance: _Instance, message: tuple, tasks: Any, results: Any, pending: collections.deque) -> None:
    """Coalesce queued queries up to the batch size (Server, MultiStream), run them, send the ids back."""
    from bertbench.bench.codec import encode_sample, split_batch

    _, items, batch_size, accuracy, padding = message
    items = list(items)
    while len(items) < batch_size:
        try:
            more = tasks.get_nowait()
        except queue.Empty:
            break
        if more[0] != "run":
            pending.append(more)
            break
        items += more[1]
    if len(items) > batch_size:
        pending.appendleft(("run", items[batch_size:], batch_size, accuracy, padding))
        items = items[:batch_size]
    rows = [index for _, index in items]
    outputs = instance.run(rows, padding)
    payloads = None
    if accuracy:
        lengths = instance.lengths[rows]
        task = instance.task
        per_sample = split_batch(outputs, lengths, task.per_token_outputs)
        fmt = instance.spec.log_format
        payloads = [encode_sample(sample, task.outputs, task.per_token_outputs, fmt) for sample in per_sample]
    results.put(("done", [sample_id for sample_id, _ in items], payloads))
