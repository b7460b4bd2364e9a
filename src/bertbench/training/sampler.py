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


def length_grouped_order(
    lengths: np.ndarray, seed: int, epoch: int, global_batch: int, megabatch: int = 50
) -> np.ndarray:
    """A visiting order whose global batches hold samples of similar length (less padding), still random:
    the epoch permutation is cut into chunks of `megabatch` global batches, each chunk is sorted by length and
    cut into global batches, and the batches are shuffled. Depends only on (seed, epoch), like epoch_order."""
    rng = np.random.default_rng([seed, epoch, 1])
    order = epoch_order(len(lengths), seed, epoch)
    size = megabatch * global_batch
    batches = []
    for start in range(0, len(order), size):
        chunk = order[start : start + size]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + global_batch] for i in range(0, len(chunk), global_batch))
    full = [b for b in batches if len(b) == global_batch]
    partial = [b for b in batches if len(b) < global_batch]
    # Full batches in random order; a partial one (at most one per chunk) only at the end, as epoch_order has it.
    return np.concatenate([full[i] for i in rng.permutation(len(full))] + partial) if batches else order


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
