"""Start/end logits of all windows -> one answer per question (n-best search, max-context rule, null answer)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertbench.models import WordPieceTokenizer
from bertbench.tasks.squad.answer_text import NO_SPAN_TEXT, ContextWords, span_text
from bertbench.tasks.squad.data import SquadExample
from bertbench.tasks.squad.features import SquadFeatures


@dataclass(frozen=True)
class DecodeParams:
    """Answer search settings (MLPerf / original BERT defaults)."""

    n_best: int = 20
    max_answer_length: int = 30
    null_score_threshold: float = 0.0  # v2.0: answer "" when null score - best span score > threshold
    allow_null: bool = False
    answer_text: str = "characters"  # see answer_text.py


def decode_predictions(
    examples: list[SquadExample],
    features: SquadFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    params: DecodeParams,
    tokenizer: WordPieceTokenizer | None = None,
) -> dict[str, str]:
    """question id -> answer text of the best-scoring valid span (its text by `params.answer_text`).

    Candidates are the n-best starts and ends among each window's real tokens (never its padding, so the
    answer does not depend on how batches were padded); a span is valid when both ends lie in the context,
    the start token has its max context in this window, end >= start and the span is at most
    `max_answer_length` tokens. Score = start logit + end logit, best over all windows of the question (the
    first in window, start, end order on a tie, as MLPerf's stable sort keeps it).
    """
    # MLPerf's scorer adds the logits as Python floats, Hugging Face's in the logits' own dtype: a tie can hinge on it.
    widen = params.answer_text == "mlperf"
    by_example: dict[int, list[int]] = {}
    for row, index in enumerate(features.example_index):
        by_example.setdefault(int(index), []).append(row)
    predictions: dict[str, str] = {}
    for index, example in enumerate(examples):
        best_score, best = -np.inf, None
        null_score = np.inf
        for row in by_example.get(index, []):
            n = int(features.lengths[row])
            starts, ends = start_logits[row, :n], end_logits[row, :n]
            if widen:
                starts, ends = starts.astype(np.float64), ends.astype(np.float64)
            null_score = min(null_score, float(starts[0] + ends[0]))
            offsets, maxctx = features.offsets[row], features.max_context[row]
            for s in _top(starts, params.n_best):
                if offsets[s, 0] < 0 or not maxctx[s]:
                    continue
                for e in _top(ends, params.n_best):
                    if offsets[e, 0] < 0 or e < s or e - s + 1 > params.max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        best_score, best = score, (row, int(s), int(e))
        if params.allow_null and null_score - best_score > params.null_score_threshold:
            predictions[example.qid] = ""
        elif best is None:
            predictions[example.qid] = NO_SPAN_TEXT[params.answer_text]
        else:
            row, s, e = best
            words = ContextWords(example.context)
            text = span_text(params.answer_text, words, features.offsets[row], features.input_ids[row], s, e, tokenizer)
            predictions[example.qid] = text
    return predictions


def _top(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first (stable for ties: lower index first)."""
    order = np.argsort(-logits, kind="stable")
    return order[:k]
