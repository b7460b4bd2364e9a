"""Word pieces in windows, labelled as transformers' token classification is: each word's first piece carries the
word's tag, its other pieces and the special tokens are ignored (-100). A sentence longer than a window is split
into windows sharing `stride` pieces; each word is then predicted from the window where its first piece has the
most context on both sides (as SQuAD's decoding picks a token's window)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORED = -100


@dataclass
class Windows:
    """Every window of every sentence, padded to max_seq_length."""

    input_ids: np.ndarray  # (windows, max_seq_length) int32
    lengths: np.ndarray  # (windows,) int32
    label_ids: np.ndarray  # (windows, max_seq_length) int16; IGNORED off first pieces (all IGNORED unlabelled)
    word_of: np.ndarray  # (windows, max_seq_length) int32: the word this position predicts, -1 elsewhere
    sentence_of: np.ndarray  # (windows,) int32
    words_without_pieces: int  # words the tokenizer drops (whitespace): predicted O


def _window_starts(count: int, room: int, stride: int) -> list[int]:
    """First piece of each window over `count` pieces, `room` to a window, consecutive ones sharing `stride`."""
    starts = [0]
    while starts[-1] + room < count:
        starts.append(starts[-1] + room - stride)
    return starts


def build_windows(
    pieces: list[list[list[int]]],
    tag_rows: list[list[int]] | None,
    max_seq_length: int,
    stride: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> Windows:
    """Windows of `pieces` (sentence -> word -> piece ids) with each word's tag row (`tag_rows`) on its first piece."""
    room = max_seq_length - 2
    rows: list[tuple[int, list[int], list[int], list[int]]] = []  # (sentence, ids, labels, word_of)
    dropped = 0
    for s, words in enumerate(pieces):
        ids, first_of = [], []  # piece ids; the word whose first piece a position is, else -1
        for w, word_pieces in enumerate(words):
            dropped += not word_pieces
            for k, piece in enumerate(word_pieces):
                ids.append(piece)
                first_of.append(w if k == 0 else -1)
        starts = _window_starts(len(ids), room, stride)
        best: dict[int, tuple[float, int]] = {}  # word -> (context, window)
        for n, start in enumerate(starts):
            end = min(start + room, len(ids))
            for p in range(start, end):
                if first_of[p] >= 0:
                    context = min(p - start, end - 1 - p) + 0.01 * (end - start)
                    if first_of[p] not in best or context > best[first_of[p]][0]:
                        best[first_of[p]] = (context, n)
        for n, start in enumerate(starts):
            end = min(start + room, len(ids))
            labels, owner = [IGNORED], [-1]
            for p in range(start, end):
                word = first_of[p]
                labels.append(tag_rows[s][word] if word >= 0 and tag_rows is not None else IGNORED)
                owner.append(word if word >= 0 and best[word][1] == n else -1)
            rows.append((s, [cls_id, *ids[start:end], sep_id], [*labels, IGNORED], [*owner, -1]))
    count = len(rows)
    out = Windows(
        np.full((count, max_seq_length), pad_id, dtype=np.int32),
        np.zeros(count, dtype=np.int32),
        np.full((count, max_seq_length), IGNORED, dtype=np.int16),
        np.full((count, max_seq_length), -1, dtype=np.int32),
        np.zeros(count, dtype=np.int32),
        dropped,
    )
    for r, (s, ids, labels, owner) in enumerate(rows):
        out.input_ids[r, : len(ids)] = ids
        out.lengths[r] = len(ids)
        out.label_ids[r, : len(labels)] = labels
        out.word_of[r, : len(owner)] = owner
        out.sentence_of[r] = s
    return out
