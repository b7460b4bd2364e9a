"""Entity-level scores, with the official semantics of each format.

- CoNLL files: entities are chunks of BIO(ES) tags as conlleval (and seqeval's default mode) reads them: a chunk
  starts at B/S, at an I/E whose type differs from the previous tag's, or after O; it ends before a B/S/O, a type
  change, or after E/S. Micro precision, recall and F1 over exact (type, start, end) matches, and per type.
- CLUENER files: CLUENER2020's own scoring: gold spans as the JSON gives them (nested ones included), predicted
  spans from the predicted tags, exact (type, start, end) matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

Span = tuple[str, int, int]


def _split(tag: str) -> tuple[str, str]:
    return ("O", "") if tag == "O" else (tag[0], tag[2:])


def _ends(prev: str, prev_type: str, tag: str, kind: str) -> bool:
    """conlleval's endOfChunk: does a chunk of (prev, prev_type) end before (tag, kind)?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I"):
        return tag in ("B", "S", "O") or kind != prev_type
    return False


def _starts(prev: str, prev_type: str, tag: str, kind: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at (tag, kind)?"""
    if tag in ("B", "S"):
        return True
    if tag in ("I", "E"):
        return prev in ("E", "S", "O") or kind != prev_type
    return False


def entities(tags: Sequence[str]) -> set[Span]:
    """The chunks of one sentence's tags as (type, first, last) with inclusive ends."""
    found: set[Span] = set()
    prev, prev_type, begin = "O", "", 0
    for i, tag in enumerate([*tags, "O"]):
        mark, kind = _split(tag)
        if _ends(prev, prev_type, mark, kind) and prev != "O":
            found.add((prev_type, begin, i - 1))
        if _starts(prev, prev_type, mark, kind):
            begin = i
        prev, prev_type = mark, kind
    return found


def entity_scores(gold: Iterable[set[Span]], predicted: Iterable[set[Span]]) -> dict[str, Any]:
    """Micro precision / recall / F1 (fractions) of exact span matches, and the same per type with its support."""
    true_pos, n_pred, n_gold = Counter(), Counter(), Counter()
    for gold_spans, pred_spans in zip(gold, predicted, strict=True):
        n_gold.update(kind for kind, _, _ in gold_spans)
        n_pred.update(kind for kind, _, _ in pred_spans)
        true_pos.update(kind for kind, _, _ in gold_spans & pred_spans)

    def prf(tp: int, pred: int, gold_count: int) -> dict[str, float]:
        precision = tp / pred if pred else 0.0
        recall = tp / gold_count if gold_count else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}

    total = prf(sum(true_pos.values()), sum(n_pred.values()), sum(n_gold.values()))
    per_type = {
        kind: {**prf(true_pos[kind], n_pred[kind], n_gold[kind]), "support": n_gold[kind]}
        for kind in sorted(set(n_gold) | set(n_pred))
    }
    return {**total, "num_entities": sum(n_gold.values()), "per_type": per_type}
