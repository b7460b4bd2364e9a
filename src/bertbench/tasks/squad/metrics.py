"""The official SQuAD metrics: v1.1 (exact match and F1, max over gold answers) and v2.0 (HasAns / NoAns).

Normalisation follows the official scripts exactly: lower case, drop punctuation, drop the articles a/an/the,
collapse whitespace. Scores are percentages (0-100).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping

from bertbench.tasks.squad.data import SquadExample

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official normalisation)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def f1_v1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the v1.1 script (0 when nothing overlaps, including empty strings)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_v2(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the v2.0 script: if either side is empty, 1 when both are, else 0."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    return f1_v1(prediction, gold)


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_v1_metrics(examples: list[SquadExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """EM and F1 as the official v1.1 script computes them; unanswered questions score 0."""
    em = f1 = 0.0
    for example in examples:
        prediction = predictions.get(example.qid)
        if prediction is None:
            continue
        em += max(exact_match(prediction, g) for g in example.answers)
        f1 += max(f1_v1(prediction, g) for g in example.answers)
    total = len(examples)
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total, "total": total}


def squad_v2_metrics(examples: list[SquadExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """exact/f1 overall and split into HasAns / NoAns, as the official v2.0 script (no na_prob file)."""
    scores: dict[str, list[tuple[float, float]]] = {"HasAns": [], "NoAns": []}
    for example in examples:
        golds = [a for a in example.answers if normalize_answer(a)] or [""]
        prediction = predictions.get(example.qid, "")
        em = max(exact_match(prediction, g) for g in golds)
        f1 = max(f1_v2(prediction, g) for g in golds)
        scores["NoAns" if golds == [""] else "HasAns"].append((em, f1))
    everything = scores["HasAns"] + scores["NoAns"]
    out = {
        "exact_match": 100.0 * sum(e for e, _ in everything) / len(everything),
        "f1": 100.0 * sum(f for _, f in everything) / len(everything),
        "total": len(everything),
    }
    for name, rows in scores.items():
        if rows:
            out[f"{name}_exact_match"] = 100.0 * sum(e for e, _ in rows) / len(rows)
            out[f"{name}_f1"] = 100.0 * sum(f for _, f in rows) / len(rows)
            out[f"{name}_total"] = len(rows)
    return out
