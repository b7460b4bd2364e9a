"""Batch plans: which samples go together and how far each batch is padded.

- fixed:   input order, every batch padded to max_seq_length (what MLPerf's reference does);
- longest: input order, each batch padded to its longest member (HF DataCollatorWithPadding);
- sorted:  samples sorted by length, each batch padded to its longest member (least padding).
Outputs are always scattered back to input order. The mode changes speed; it changes results only where a batch's
contents matter (dynamic INT8 scales activations per batch, so its outputs depend on the batch a sample is in).
Every path that batches (eval's plans, LoadGen's SUT, the instances, ORT's calibration) orders and pads here.
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


@dataclass
class BatchPlan:
    """Rows and padded length of every batch, in execution order."""

    rows: list[np.ndarray]
    seq_lens: list[int]

    @property
    def padded_tokens(self) -> int:
        """Token positions fed to the model, padding included."""
        return int(sum(len(r) * s for r, s in zip(self.rows, self.seq_lens, strict=True)))


def check_padding(padding: str) -> None:
    """ValueError for a padding mode that does not exist."""
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {padding!r}")


def order_rows(lengths: np.ndarray, padding: str) -> np.ndarray:
    """The order samples are batched in: longest first (ties in input order) for `sorted`, else input order."""
    check_padding(padding)
    lengths = np.asarray(lengths)
    return np.argsort(-lengths, kind="stable") if padding == "sorted" else np.arange(len(lengths))


def padded_length(lengths: np.ndarray, padding: str, max_seq_length: int) -> int:
    """How far a batch of samples of these lengths is padded: max_seq_length for `fixed`, else its longest."""
    check_padding(padding)
    return max_seq_length if padding == "fixed" else int(np.asarray(lengths).max())


def plan_batches(lengths: np.ndarray, batch_size: int, padding: str, max_seq_length: int) -> BatchPlan:
    """Split samples into batches of `batch_size` according to the padding mode."""
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    lengths = np.asarray(lengths)
    order = order_rows(lengths, padding)
    rows = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return BatchPlan(rows, [padded_length(lengths[r], padding, max_seq_length) for r in rows])
