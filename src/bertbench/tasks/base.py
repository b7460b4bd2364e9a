"""The Task seam: what every task (SQuAD, SST-2, masked LM) provides to the jobs.

A task turns text files into prebuilt features, model outputs into predictions and metrics, and training batches
into a loss. It knows no runtime and no timing: every runtime's numpy outputs go through the same `score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from bertbench.cache import Cache
    from bertbench.models import BertHeadModel, WordPieceTokenizer


class TaskOptions(Protocol):
    """A task's own options dataclass (windowing, decoding, masking, …)."""

    max_seq_length: int

    def validate(self) -> None:
        """Raise ValueError for settings that cannot run."""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""


class EvalData(Protocol):
    """Prebuilt evaluation features: padded model inputs for any rows, plus the facts a record keeps."""

    lengths: np.ndarray

    @property
    def num_samples(self) -> int:
        """Samples (SQuAD: windows; SST-2: sentences; MLM: sequences)."""

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 inputs of `rows`, padded or cut to `seq_len`."""

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""


class RowSubset:
    """Some rows of evaluation features, seen as features of their own (a shard, a calibration sample)."""

    def __init__(self, source: EvalData, rows: np.ndarray) -> None:
        self.source, self.rows = source, np.asarray(rows)
        self.lengths = np.asarray(source.lengths)[self.rows]

    @property
    def num_samples(self) -> int:
        """Rows in the subset."""
        return len(self.rows)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Inputs of the subset's local rows."""
        return self.source.model_inputs(self.rows[rows], seq_len)


class TrainData(Protocol):
    """Training samples that can be batched by row indices (with their labels)."""

    lengths: np.ndarray

    @property
    def num_samples(self) -> int:
        """Samples."""

    def training_batch(self, rows: np.ndarray, epoch: int) -> dict[str, np.ndarray]:
        """Inputs and labels for `rows` (`epoch` lets a source vary e.g. its masks deterministically)."""

    def describe(self) -> dict[str, Any]:
        """Data facts for records."""


class Task(Protocol):
    """One task: its options, head, outputs and metrics, data loaders, loss and scorer."""

    name: str
    options_class: type
    head: type[BertHeadModel]
    outputs: tuple[str, ...]  # what the model returns, by name
    per_token_outputs: tuple[str, ...]  # outputs with one value per token (padded back to max_seq_length)
    primary_metric: str  # what the accuracy guard compares
    metrics: tuple[str, ...]  # what score() reports

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: Any,
        cache: Cache,
        max_examples: int | None = None,
    ) -> EvalData:
        """Features of an evaluation file, from the cache (built on a miss)."""

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: Any,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
    ) -> TrainData:
        """Training samples with labels, from the cache (built on a miss)."""

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Shrink one batch's raw outputs to what score() needs (e.g. argmax over a vocabulary)."""

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample training loss."""

    def score(self, dataset: Any, outputs: dict[str, np.ndarray], options: Any) -> tuple[Any, dict[str, Any]]:
        """Outputs of every sample, in input order -> (predictions, metrics)."""

    def write_predictions(self, predictions: Any, output_dir: Path, dataset: Any) -> Path | None:
        """The task's predictions file in its official format (None when it has none)."""
