"""Batch plans: which samples go together and how far each batch is padded.

- fixed:   input order, every batch padded to max_seq_length (what MLPerf's reference does);
- longest: input order, each batch padded to its longest member (HF DataCollatorWithPadding);
- sorted:  samples sorted by length, each batch padded to its longest member (least padding).
Outputs are always scattered back to input order, so the mode changes speed, never results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bertbench.choices import PADDING_MODES


class BatchSource(Protocol):
    """Prebuilt features that can hand out padded model inputs for any set of rows."""

    lengths: np.ndarray

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 inputs for `rows`, padded or cut to `seq_len`."""


class RowSubset:
    """Some rows of a BatchSource, seen as a BatchSource of their own (a shard, a calibration sample)."""

    def __init__(self, source: BatchSource, rows: np.ndarray) -> None:
        self.source, self.rows = source, np.asarray(rows)
        self.lengths = np.asarray(source.lengths)[self.rows]

    @property
    def num_samples(self) -> int:
        """Rows in the subset."""
        return len(self.rows)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Inputs of the subset's local rows."""
        return self.source.model_inputs(self.rows[rows], seq_len)


@dataclass
class BatchPlan:
    """Rows and padded length of every batch, in execution order."""

    rows: list[np.ndarray]
    seq_lens: list[int]

    @property
    def padded_tokens(self) -> int:
        """Token positions fed to the model, padding included."""
        return int(sum(len(r) * s for r, s in zip(self.rows, self.seq_lens, strict=True)))


def plan_batches(lengths: np.ndarray, batch_size: int, padding: str, max_seq_length: int) -> BatchPlan:
    """Split samples into batches of `batch_size` according to the padding mode."""
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {padding!r}")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    order = np.argsort(-lengths, kind="stable") if padding == "sorted" else np.arange(len(lengths))
    rows = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if padding == "fixed":
        seq_lens = [max_seq_length] * len(rows)
    else:
        seq_lens = [int(lengths[r].max()) for r in rows]
    return BatchPlan(rows, seq_lens)
