"""MLPerf Inference's BERT accuracy scorer (`language/bert/accuracy-squad.py` with its `create_squad_data.py` and
`evaluate_v1.1.py`, mlcommons/inference), re-implemented from its published algorithm so that the tests can score
our LoadGen accuracy logs as MLPerf does without vendoring MLPerf's code. It imports nothing from bertbench.
Checked against the script itself (2026-12-02, mlcommons/inference at 0872edc, run unchanged outside this repository
on a bench log of all 795 questions of the development file): the same answer to every question and the same F1.

What it does, as the script does:
- examples: each context split on whitespace into words (char -> word offsets), every question kept;
- features: transformers' BertTokenizer on the question (cut at max_query_length) and on every context word, windows
  of max_seq_length - len(question) - 3 tokens whose starts advance by min(window, doc_stride), each window's
  token -> word map and "max context" flags; one feature per window, in order (the QSL index);
- the log: each sample's bytes as a flat array of `dtype`, reshaped [-1, 2] (or [2, -1] and transposed), start and
  end logits padded to max_seq_length with -10000;
- predictions: for each question, the 20 best starts x 20 best ends of each window, kept when both are context
  tokens of max context, end >= start, at most 30 tokens; the best by start + end logit; its text projected back
  onto the original words (`get_final_text`, which tokenizes the original text with the full WordPiece tokenizer,
  as the MLPerf script passes it); "empty" when no span is valid;
- metrics: the official SQuAD v1.1 exact match and F1 (max over the gold answers, x 100).
"""

from __future__ import annotations

import collections
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_SEQ_LENGTH, MAX_QUERY_LENGTH, DOC_STRIDE = 384, 64, 128
N_BEST, MAX_ANSWER_LENGTH = 20, 30
DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class Example:
    qas_id: str
    question: str
    words: list[str]
    answers: list[str]


@dataclass
class Window:
    example: int
    tokens: list[str]
    word_of_token: dict[int, int] = field(default_factory=dict)
    max_context: dict[int, bool] = field(default_factory=dict)


def _space(c: str) -> bool:
    return c in " \t\r\n" or ord(c) == 0x202F


def read_examples(path: Path) -> list[Example]:
    examples = []
    for article in json.loads(Path(path).read_text())["data"]:
        for paragraph in article["paragraphs"]:
            words: list[str] = []
            after_space = True
            for c in paragraph["context"]:
                if _space(c):
                    after_space = True
                    continue
                if after_space:
                    words.append(c)
                else:
                    words[-1] += c
                after_space = False
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa.get("answers", [])]
                examples.append(Example(qa["id"], qa["question"], words, answers))
    return examples


def _spans(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while start < n_tokens:
        length = min(n_tokens - start, room)
        spans.append((start, length))
        if start + length == n_tokens:
            break
        start += min(length, stride)
    return spans


def _is_max_context(spans: list[tuple[int, int]], here: int, position: int) -> bool:
    best, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if not start <= position <= end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best is None or score > best:
            best, best_index = score, index
    return best_index == here


def make_windows(examples: list[Example], tokenizer) -> list[Window]:
    windows = []
    for index, example in enumerate(examples):
        question = tokenizer.tokenize(example.question)[:MAX_QUERY_LENGTH]
        pieces, word_of_piece = [], []
        for w, word in enumerate(example.words):
            for piece in tokenizer.tokenize(word):
                pieces.append(piece)
                word_of_piece.append(w)
        spans = _spans(len(pieces), MAX_SEQ_LENGTH - len(question) - 3, DOC_STRIDE)
        for s, (start, length) in enumerate(spans):
            window = Window(index, ["[CLS]", *question, "[SEP]"])
            for i in range(start, start + length):
                position = len(window.tokens)
                window.word_of_token[position] = word_of_piece[i]
                window.max_context[position] = _is_max_context(spans, s, i)
                window.tokens.append(pieces[i])
            window.tokens.append("[SEP]")
            windows.append(window)
    return windows


def read_log(path: Path, dtype: str = "float32", transposed: bool = False) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """qsl_idx -> (start, end) logits padded to MAX_SEQ_LENGTH with -10000."""
    out = {}
    for entry in json.loads(Path(path).read_text()):
        flat = np.frombuffer(bytes.fromhex(entry["data"]), DTYPES[dtype])
        logits = flat.reshape(2, -1).T if transposed else flat.reshape(-1, 2)
        start = np.full(MAX_SEQ_LENGTH, -10000.0)
        end = np.full(MAX_SEQ_LENGTH, -10000.0)
        start[: len(logits)] = logits[:, 0]
        end[: len(logits)] = logits[:, 1]
        out[int(entry["qsl_idx"])] = (start, end)
    return out


def _best(values: np.ndarray, n: int) -> list[int]:
    # a stable sort by descending value, ties in index order (as sorted(enumerate(...), reverse=True) leaves them)
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=True)
    return order[:n]


def _final_text(tokenizer, predicted: str, original: str) -> str:
    """Project the detokenized prediction onto the original text (the script's heuristic, with the WordPiece
    tokenizer it is given)."""
    tokenized = " ".join(tokenizer.tokenize(original))
    at = tokenized.find(predicted)
    if at == -1:
        return original

    def without_spaces(text: str) -> tuple[str, dict[int, int]]:
        kept, where = [], {}
        for i, c in enumerate(text):
            if c != " ":
                where[len(kept)] = i
                kept.append(c)
        return "".join(kept), where

    orig_ns, orig_map = without_spaces(original)
    tok_ns, tok_map = without_spaces(tokenized)
    if len(orig_ns) != len(tok_ns):
        return original
    tok_to_ns = {i: n for n, i in tok_map.items()}
    start_ns, end_ns = tok_to_ns.get(at), tok_to_ns.get(at + len(predicted) - 1)
    if start_ns not in orig_map or end_ns not in orig_map:
        return original
    return original[orig_map[start_ns] : orig_map[end_ns] + 1]


def predict(examples: list[Example], windows: list[Window], logits: dict, tokenizer) -> dict[str, str]:
    by_example = collections.defaultdict(list)
    for qsl_idx, window in enumerate(windows):
        by_example[window.example].append((qsl_idx, window))
    predictions = {}
    for index, example in enumerate(examples):
        candidates = []
        for qsl_idx, window in by_example[index]:
            if qsl_idx not in logits:
                continue
            start, end = logits[qsl_idx]
            for s in _best(start, N_BEST):
                for e in _best(end, N_BEST):
                    if s >= len(window.tokens) or e >= len(window.tokens):
                        continue
                    if s not in window.word_of_token or e not in window.word_of_token:
                        continue
                    if not window.max_context.get(s, False) or e < s or e - s + 1 > MAX_ANSWER_LENGTH:
                        continue
                    candidates.append((start[s] + end[e], window, s, e))
        candidates.sort(key=lambda c: c[0], reverse=True)
        seen, best = set(), None
        for _, window, s, e in candidates:
            pieces = " ".join(window.tokens[s : e + 1]).replace(" ##", "").replace("##", "")
            predicted = " ".join(pieces.strip().split())
            words = example.words[window.word_of_token[s] : window.word_of_token[e] + 1]
            text = _final_text(tokenizer, predicted, " ".join(words))
            if text in seen:
                continue
            seen.add(text)
            if best is None:
                best = text
            if len(seen) >= N_BEST:
                break
        predictions[example.qas_id] = best if best is not None else "empty"
    return predictions


def _normal(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(prediction: str, truth: str) -> float:
    ours, theirs = _normal(prediction).split(), _normal(truth).split()
    common = collections.Counter(ours) & collections.Counter(theirs)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(ours), same / len(theirs)
    return 2 * precision * recall / (precision + recall)


def squad_v11(examples: list[Example], predictions: dict[str, str]) -> dict[str, float]:
    em = f1 = 0.0
    for example in examples:
        if example.qas_id not in predictions:
            continue  # the official script counts a missing prediction as 0 and says so
        prediction = predictions[example.qas_id]
        em += max(float(_normal(prediction) == _normal(t)) for t in example.answers)
        f1 += max(_f1(prediction, t) for t in example.answers)
    return {"exact_match": 100.0 * em / len(examples), "f1": 100.0 * f1 / len(examples)}


def score(
    data: Path,
    vocab: Path,
    log: Path,
    dtype: str = "float32",
    transposed: bool = False,
    max_examples: int | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """MLPerf's F1 and exact match of a LoadGen accuracy log of SQuAD windows, and its answers (`max_examples`: the
    first N questions, as the script's --max_examples)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(str(vocab))
    examples = read_examples(data)[:max_examples]
    windows = make_windows(examples, tokenizer)
    answers = predict(examples, windows, read_log(log, dtype, transposed), tokenizer)
    return squad_v11(examples, answers), answers
