"""Task options shared by the CLI and the jobs; each task reads the ones that concern it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TaskOptions:
    """Sequence shaping, answer decoding and masking (SQuAD defaults follow MLPerf inference, masking follows
    BERT pretraining phase 1: 15 %, at most 20 predictions per 128-token sequence)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_score_threshold: float = 0.0
    mask_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_masking: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records."""
        return asdict(self)
