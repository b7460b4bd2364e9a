"""Documents -> WordPiece training sequences, stored flat (one token array + offsets) for memory-mapping.

Without next-sentence prediction, sentences are packed greedily into sequences of up to max_seq_length tokens
([CLS] … [SEP]); a sequence may run on into the next document, with [SEP] between documents (as RoBERTa's
"full sentences"), so that short documents do not waste the batch. With NSP, each sequence is a pair
[CLS] A [SEP] B [SEP] where B follows A in its document or, half of the time, is taken from another document
(as the original BERT data generator does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertbench.models.tokenizer import WordPieceTokenizer


@dataclass
class Sequences:
    """Ragged token sequences: sequence i is tokens[offsets[i]:offsets[i+1]]."""

    tokens: np.ndarray  # int32, special tokens included
    offsets: np.ndarray  # int64, n + 1
    segment_b_start: np.ndarray  # int32 per sequence: first position of segment B (= length when none)
    nsp_labels: np.ndarray  # int8 per sequence: 1 when B is a random continuation (NSP only)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence, specials included."""
        return np.diff(self.offsets).astype(np.int32)

    def arrays(self) -> dict[str, np.ndarray]:
        """Field name -> array, for storage."""
        return dict(vars(self))


def _tokenise(documents: list[list[str]], tokenizer: WordPieceTokenizer) -> list[list[list[int]]]:
    flat = [s for doc in documents for s in doc]
    ids = [e.ids for e in tokenizer.encode_batch(flat)]
    out, k = [], 0
    for doc in documents:
        out.append([s for s in ids[k : k + len(doc)] if s])
        k += len(doc)
    return [d for d in out if d]


def _pack(documents: list[list[list[int]]], tokenizer: WordPieceTokenizer, max_seq_length: int) -> list[list[int]]:
    budget = max_seq_length - 2
    sequences: list[list[int]] = []
    current: list[int] = []

    def flush() -> None:
        if current:
            sequences.append([tokenizer.cls_id, *current, tokenizer.sep_id])
            current.clear()

    for doc in documents:
        if current and len(current) + 1 < budget:
            current.append(tokenizer.sep_id)  # document boundary inside a packed sequence
        for sentence in doc:
            while len(sentence) > budget:  # a sentence longer than a sequence is cut into pieces
                flush()
                current.extend(sentence[:budget])
                flush()
                sentence = sentence[budget:]
            if len(current) + len(sentence) > budget:
                flush()
            current.extend(sentence)
    flush()
    return sequences


def _pairs(
    documents: list[list[list[int]]], tokenizer: WordPieceTokenizer, max_seq_length: int, rng: np.random.Generator
) -> list[tuple[list[int], list[int], bool]]:
    budget = max_seq_length - 3
    pairs = []
    for d, doc in enumerate(documents):
        chunk: list[list[int]] = []
        for i, sentence in enumerate(doc):
            chunk.append(sentence)
            if i == len(doc) - 1 or sum(map(len, chunk)) >= budget:
                split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
                a = [t for s in chunk[:split] for t in s]
                random_next = len(chunk) == 1 or (len(documents) > 1 and rng.random() < 0.5)
                if random_next and len(documents) > 1:
                    other = (d + int(rng.integers(1, len(documents)))) % len(documents)
                    start = int(rng.integers(0, len(documents[other])))
                    b = [t for s in documents[other][start:] for t in s]
                else:
                    random_next = False
                    b = [t for s in chunk[split:] for t in s]
                while len(a) + len(b) > budget:  # trim the longer side, as the original generator does
                    (a if len(a) > len(b) else b).pop()
                if a and b:
                    pairs.append((a, b, random_next))
                chunk = []
    return pairs


def build_sequences(
    documents: list[list[str]], tokenizer: WordPieceTokenizer, max_seq_length: int, nsp: bool, seed: int
) -> Sequences:
    """Tokenise the documents and cut them into training sequences (see module docstring)."""
    tokenised = _tokenise(documents, tokenizer)
    if nsp:
        rows, b_starts, labels = [], [], []
        for a, b, random_next in _pairs(tokenised, tokenizer, max_seq_length, np.random.default_rng(seed)):
            rows.append([tokenizer.cls_id, *a, tokenizer.sep_id, *b, tokenizer.sep_id])
            b_starts.append(len(a) + 2)
            labels.append(int(random_next))
    else:
        rows = _pack(tokenised, tokenizer, max_seq_length)
        b_starts = [len(r) for r in rows]
        labels = [0] * len(rows)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    tokens = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(offsets[-1]))
    return Sequences(tokens, offsets, np.asarray(b_starts, dtype=np.int32), np.asarray(labels, dtype=np.int8))
