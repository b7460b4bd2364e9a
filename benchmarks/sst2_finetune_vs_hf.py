"""bertbench vs a Hugging Face reference on SST-2: same model, data, hyper-parameters, seed, initial head and order.

Runs, one after the other (never concurrently, so neither steals the other's cores):
  1. `bertbench finetune sst2` on the train file (saves the freshly initialised classifier and pooler),
  2. `bertbench eval sst2` of the fine-tuned model on the dev file,
  3. benchmarks/sst2_hf_reference.py (transformers' BertForSequenceClassification, plain PyTorch loop), starting
     from bertbench's saved initial head,
then prints both side by side and whether our accuracy is within 0.01 of the reference or above it.

    python benchmarks/sst2_finetune_vs_hf.py --output-root runs/sst2-vs-hf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench_cli import bertbench, run

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "sst2"
TOLERANCE = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--train", type=Path, default=DATA / "train.tsv")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.tsv")
    parser.add_argument("--output-root", type=Path, default=Path("runs/sst2-vs-hf"))
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-train-samples", type=int, default=None)
    args = parser.parse_args()

    ours, ours_eval, reference = (args.output_root / name for name in ("bertbench", "bertbench-eval", "hf-reference"))
    shared = ["--learning-rate", str(args.learning_rate), "--epochs", str(args.epochs)]
    shared += ["--batch-size", str(args.batch_size), "--warmup-ratio", str(args.warmup_ratio)]
    shared += ["--weight-decay", str(args.weight_decay), "--seed", str(args.seed), "--threads", str(args.threads)]
    limits = ["--max-train-samples", str(args.max_train_samples)] if args.max_train_samples else []

    ours_wall = run(
        bertbench(
            "finetune", "sst2", "--model", args.model, "--train", str(args.train),
            "--output-dir", str(ours), "--overwrite", *shared, *limits,
        )
    )  # fmt: skip
    run(
        bertbench(
            "eval", "sst2", "--model", str(ours), "--data", str(args.eval),
            "--output-dir", str(ours_eval), "--overwrite", "--threads", str(args.threads),
        )
    )  # fmt: skip
    reference_wall = run(
        [
            sys.executable, str(HERE / "sst2_hf_reference.py"), "--train", str(args.train), "--eval", str(args.eval),
            "--output-dir", str(reference), "--init-head", str(ours / "initial_head.safetensors"), *shared, *limits,
        ]
    )  # fmt: skip

    a = json.loads((ours / "metrics.json").read_text())
    e = json.loads((ours_eval / "metrics.json").read_text())
    r = json.loads((reference / "metrics.json").read_text())
    rows = [
        ("dev accuracy", e["accuracy"], r["accuracy"]),
        ("train sentences", a["num_train_samples"], r["num_train_examples"]),
        ("optimizer steps", a["steps"], r["steps"]),
        ("train sentences/s", a["train_samples_per_s"], r["train_samples_per_s"]),
        ("eval sentences/s", e["throughput"], r["eval_samples_per_s"]),
        ("fine-tune wall s", ours_wall, reference_wall),
    ]
    print(f"\n{'':20}{'bertbench':>12}{'HF reference':>14}{'ratio':>8}")
    for name, x, y in rows:
        print(f"{name:20}{x:12.4f}{y:14.4f}{x / y if y else float('nan'):8.3f}")
    delta = e["accuracy"] - r["accuracy"]
    verdict = "PASS" if delta >= -TOLERANCE else "FAIL"
    print(f"\naccuracy bertbench - reference = {delta:+.4f} ({verdict}: must be >= -{TOLERANCE})")
    summary = {"delta_accuracy": delta, "verdict": verdict, "rows": rows, "args": vars(args)}
    (args.output_root / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
