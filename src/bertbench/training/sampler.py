"""Deterministic data order shared by every process count.

Epoch e visits samples in `permutation(seed, e)`. Optimizer step s takes the next `global_batch` samples of
that order and splits them into world_size x grad_accum micro-batches, so a run on 2 processes sees exactly
the samples that a 1-process run sees in the same step, and a resumed run continues at the same sample.
"""

from __future__ import annotations

import numpy as np


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The visiting order of epoch `epoch` (a permutation seeded by (seed, epoch))."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def steps_per_epoch(num_samples: int, global_batch: int, parts: int) -> int:
    """Optimizer steps per epoch; a last partial batch is kept if every micro-batch still gets a sample."""
    full, rest = divmod(num_samples, global_batch)
    return full + (1 if rest >= parts else 0)


def micro_batches(
    order: np.ndarray, step: int, global_batch: int, world_size: int, grad_accum: int, rank: int
) -> tuple[list[np.ndarray], int]:
    """This rank's micro-batches for optimizer step `step` of the epoch, and the step's total sample count."""
    rows = order[step * global_batch : (step + 1) * global_batch]
    chunks = np.array_split(rows, world_size * grad_accum)
    return [chunks[m * world_size + rank] for m in range(grad_accum)], len(rows)
