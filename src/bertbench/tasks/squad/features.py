"""SQuAD examples -> fixed-size model windows, with offsets back to context characters.

Windowing follows the original BERT / MLPerf reference: the context is cut into windows of at most
`max_seq_length - len(question) - 3` tokens whose starts are `doc_stride` tokens apart (doc_stride is the step,
not the overlap that Hugging Face tokenizers call `stride`). A token seen in several windows is scored only in
the window where it has the most context on both sides (`max_context`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bertbench.models.tokenizer import Encoding, WordPieceTokenizer
from bertbench.tasks.squad.data import SquadExample

# Bumped whenever the feature layout or windowing changes: part of the cache key.
FEATURES_VERSION = 1


@dataclass(frozen=True)
class FeatureParams:
    """Windowing parameters (MLPerf defaults)."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64

    def validate(self) -> None:
        """Reject parameter sets that cannot produce a window holding context."""
        if self.doc_stride < 1 or self.max_query_length < 1:
            raise ValueError("doc_stride and max_query_length must be positive")
        if self.max_seq_length - self.max_query_length - 3 < 1:
            raise ValueError("max_seq_length leaves no room for context after the question")
        if self.max_seq_length > 512:
            raise ValueError("max_seq_length above 512 exceeds BERT's position embeddings")

    def as_dict(self) -> dict[str, int]:
        """Plain dict for cache keys and metrics.json."""
        return asdict(self)


@dataclass
class SquadFeatures:
    """All windows of a data set as arrays; rows are windows, columns are token positions (padded)."""

    input_ids: np.ndarray  # (n, L) int32, padded with pad id
    token_type_ids: np.ndarray  # (n, L) int8
    lengths: np.ndarray  # (n,) int32 real tokens per window
    offsets: np.ndarray  # (n, L, 2) int32 character span in the context; -1 outside the context
    max_context: np.ndarray  # (n, L) bool: this window is the best one to score this token from
    example_index: np.ndarray  # (n,) int32 index of the example the window belongs to
    start_positions: np.ndarray  # (n,) int32 training label (0 = [CLS] when the answer is not inside)
    end_positions: np.ndarray  # (n,) int32

    def __len__(self) -> int:
        return len(self.lengths)

    def arrays(self) -> dict[str, np.ndarray]:
        """Field name -> array, for storage."""
        return dict(vars(self))

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SquadFeatures:
        """Rebuild from `arrays()` output (e.g. an .npz file)."""
        return cls(**{name: arrays[name] for name in cls.__dataclass_fields__})

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 model inputs for `rows`, cut or padded to `seq_len` columns."""
        ids = self.input_ids[rows, :seq_len].astype(np.int64)
        types = self.token_type_ids[rows, :seq_len].astype(np.int64)
        mask = (np.arange(seq_len)[None, :] < self.lengths[rows, None]).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _window_starts(num_tokens: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows the original BERT code makes (the last one ends at the context's end)."""
    starts, start = [], 0
    while True:
        starts.append(start)
        if start + window >= num_tokens:
            return starts
        start += min(window, stride)


def _answer_token_span(offsets: list[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """Context-token indices of the first and last token overlapping [start_char, end_char)."""
    first = next((i for i, (s, e) in enumerate(offsets) if e > start_char), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end_char), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def locate_answer(example: SquadExample) -> tuple[int, int] | None:
    """Character span [start, end) of the first gold answer; re-found in the context if answer_start is off."""
    if not example.answers or not example.answers[0].strip():
        return None
    text = example.answers[0]
    start = example.answer_starts[0]
    if example.context[start : start + len(text)] != text:
        start = example.context.find(text)
        if start < 0:
            return None
    return start, start + len(text)


def build_features(examples: list[SquadExample], tokenizer: WordPieceTokenizer, params: FeatureParams) -> SquadFeatures:
    """Tokenise questions and (unique) contexts once, then cut every example into windows."""
    params.validate()
    L = params.max_seq_length
    contexts = list(dict.fromkeys(e.context for e in examples))
    context_encodings = dict(zip(contexts, tokenizer.encode_batch(contexts), strict=True))
    # Leading whitespace in questions would only add offsets noise; the tokenizer drops it anyway.
    questions = tokenizer.encode_batch([e.question.lstrip() for e in examples])

    rows: dict[str, list] = {k: [] for k in ("ids", "types", "lengths", "offsets", "maxctx", "example", "sp", "ep")}
    for index, (example, question) in enumerate(zip(examples, questions, strict=True)):
        q_ids = question.ids[: params.max_query_length]
        context: Encoding = context_encodings[example.context]
        window = L - len(q_ids) - 3
        starts = _window_starts(len(context.ids), window, params.doc_stride)
        span = locate_answer(example)
        token_span = _answer_token_span(context.offsets, *span) if span else None
        prefix = len(q_ids) + 2  # [CLS] question [SEP]
        best_window = _best_window_per_token(starts, window, len(context.ids))
        for w, start in enumerate(starts):
            end = min(start + window, len(context.ids))  # exclusive
            ids = [tokenizer.cls_id, *q_ids, tokenizer.sep_id, *context.ids[start:end], tokenizer.sep_id]
            n = len(ids)
            padded = np.full(L, tokenizer.pad_id, dtype=np.int32)
            padded[:n] = ids
            types = np.zeros(L, dtype=np.int8)
            types[prefix:n] = 1
            offsets = np.full((L, 2), -1, dtype=np.int32)
            offsets[prefix : prefix + end - start] = context.offsets[start:end]
            maxctx = np.zeros(L, dtype=bool)
            maxctx[prefix : prefix + end - start] = best_window[start:end] == w
            sp = ep = 0
            if token_span and start <= token_span[0] and token_span[1] < end:
                sp, ep = token_span[0] - start + prefix, token_span[1] - start + prefix
            for key, value in zip(rows, (padded, types, n, offsets, maxctx, index, sp, ep), strict=True):
                rows[key].append(value)
    return SquadFeatures(
        input_ids=np.stack(rows["ids"]),
        token_type_ids=np.stack(rows["types"]),
        lengths=np.asarray(rows["lengths"], dtype=np.int32),
        offsets=np.stack(rows["offsets"]),
        max_context=np.stack(rows["maxctx"]),
        example_index=np.asarray(rows["example"], dtype=np.int32),
        start_positions=np.asarray(rows["sp"], dtype=np.int32),
        end_positions=np.asarray(rows["ep"], dtype=np.int32),
    )


def _best_window_per_token(starts: list[int], window: int, total: int) -> np.ndarray:
    """For each context token, the window giving it the most context: max of min(left, right) + 0.01·length.

    Ties go to the earlier window, as in the original BERT code.
    """
    begin = np.asarray(starts)[:, None]
    last = np.minimum(begin + window, total) - 1  # inclusive
    positions = np.arange(total)[None, :]
    score = np.minimum(positions - begin, last - positions) + 0.01 * (last - begin + 1)
    score = np.where((positions >= begin) & (positions <= last), score, -np.inf)
    return score.argmax(axis=0) if total else np.zeros(0, dtype=np.int64)
