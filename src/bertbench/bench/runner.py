"""Timed inference over prebuilt features: warm-up outside the clock, then every batch inside it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertbench.bench.codec import PAD_LOGIT
from bertbench.progress import progress_bar
from bertbench.runtimes.base import Runtime
from bertbench.tasks.batching import BatchSource, plan_batches


@dataclass
class InferenceResult:
    """Outputs in input order, and how long the timed part took."""

    outputs: dict[str, np.ndarray]
    num_samples: int
    timed_s: float
    warmup_s: float
    batch_latencies_ms: list[float] = field(default_factory=list)
    mean_tokens: float = 0.0
    mean_padded_tokens: float = 0.0
    padded_tokens_x_len: int = 0  # sum over batches of batch_size * seq_len**2 (attention FLOPs scale with it)

    @property
    def throughput(self) -> float:
        """Samples per second over the timed region."""
        return self.num_samples / self.timed_s if self.timed_s > 0 else float("nan")

    def timing(self) -> dict[str, Any]:
        """Flat timing facts for metrics.json."""
        return {
            "throughput": self.throughput,
            "num_samples": self.num_samples,
            "inference_s": self.timed_s,
            "warmup_s": self.warmup_s,
            "mean_tokens": self.mean_tokens,
            "mean_padded_tokens": self.mean_padded_tokens,
            "padded_tokens_x_len": self.padded_tokens_x_len,
        }


def run_inference(
    runtime: Runtime,
    source: BatchSource,
    *,
    batch_size: int,
    padding: str,
    max_seq_length: int,
    per_token_outputs: tuple[str, ...] = (),
    reduce_outputs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    warmup_batches: int = 1,
    show_progress: bool = True,
    description: str = "inference",
) -> InferenceResult:
    """Run every sample through `runtime`; the clock covers batching, padding, inference and copies back."""
    lengths = np.asarray(source.lengths)
    n = len(lengths)
    plan = plan_batches(lengths, batch_size, padding, max_seq_length)
    start = time.perf_counter()
    for b in range(min(warmup_batches, len(plan.rows))):
        runtime.infer(source.model_inputs(plan.rows[b], plan.seq_lens[b]))
    warmup_s = time.perf_counter() - start

    outputs: dict[str, np.ndarray] = {}
    latencies = []
    with progress_bar(description, total=n, enabled=show_progress) as advance:
        begin = time.perf_counter()
        for rows, seq_len in zip(plan.rows, plan.seq_lens, strict=True):
            t0 = time.perf_counter()
            batch_out = runtime.infer(source.model_inputs(rows, seq_len))
            if reduce_outputs is not None:
                batch_out = reduce_outputs(batch_out)
            for name, value in batch_out.items():
                if name not in outputs:
                    shape = (n, max_seq_length) if name in per_token_outputs else (n, *value.shape[1:])
                    fill = PAD_LOGIT if name in per_token_outputs else 0
                    outputs[name] = np.full(shape, fill, dtype=value.dtype)
                if name in per_token_outputs:
                    outputs[name][rows, : value.shape[1]] = value
                else:
                    outputs[name][rows] = value
            latencies.append((time.perf_counter() - t0) * 1e3)
            advance(len(rows))
        timed_s = time.perf_counter() - begin
    return InferenceResult(
        outputs=outputs,
        num_samples=n,
        timed_s=timed_s,
        warmup_s=warmup_s,
        batch_latencies_ms=latencies,
        mean_tokens=float(lengths.mean()) if n else 0.0,
        mean_padded_tokens=plan.padded_tokens / n if n else 0.0,
        padded_tokens_x_len=int(sum(len(r) * s * s for r, s in zip(plan.rows, plan.seq_lens, strict=True))),
    )
