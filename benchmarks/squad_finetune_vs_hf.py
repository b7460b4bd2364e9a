"""bertbench vs a Hugging Face reference: same model, data, hyper-parameters, seed, initial head and data order.

Runs, one after the other (never concurrently, so neither steals the other's cores):
  1. `bertbench finetune squad` on the train file (saves the freshly initialised QA head),
  2. `bertbench eval squad` of the fine-tuned model on the eval file,
  3. benchmarks/squad_hf_reference.py (transformers' BertForQuestionAnswering, plain PyTorch loop, standard n-best
     post-processing, official metric), starting from bertbench's saved initial head,
then prints both side by side and whether our F1 is within 1.0 of the reference or above it.

    python benchmarks/squad_finetune_vs_hf.py --output-root runs/squad-vs-hf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench_cli import bertbench, eval_squad, run

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "squad"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--train", type=Path, default=DATA / "train.json")
    parser.add_argument("--eval", type=Path, default=DATA / "dev.json")
    parser.add_argument("--output-root", type=Path, default=Path("runs/squad-vs-hf"))
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    args = parser.parse_args()

    ours, ours_eval, reference = (args.output_root / name for name in ("bertbench", "bertbench-eval", "hf-reference"))
    shared = [
        "--learning-rate",
        str(args.learning_rate),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--warmup-ratio",
        str(args.warmup_ratio),
        "--weight-decay",
        str(args.weight_decay),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
    ]
    limits = []
    if args.max_train_samples:
        limits += ["--max-train-samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        limits += ["--max-eval-samples", str(args.max_eval_samples)]
    eval_limit = ["--max-samples", str(args.max_eval_samples)] if args.max_eval_samples else []

    ours_train_wall = run(
        bertbench(
            "finetune",
            "squad",
            "--model",
            args.model,
            "--train",
            str(args.train),
            "--output-dir",
            str(ours),
            "--overwrite",
            *shared,
            *limits,
        )
    )
    run(eval_squad(ours, args.eval, ours_eval, args.threads, *eval_limit))
    reference_wall = run(
        [
            sys.executable,
            str(HERE / "squad_hf_reference.py"),
            "--train",
            str(args.train),
            "--eval",
            str(args.eval),
            "--output-dir",
            str(reference),
            "--init-head",
            str(ours / "initial_head.safetensors"),
            *shared,
            *limits,
        ]
    )

    a = json.loads((ours / "metrics.json").read_text())
    e = json.loads((ours_eval / "metrics.json").read_text())
    r = json.loads((reference / "metrics.json").read_text())
    rows = [
        ("EM", e["exact_match"], r["exact_match"]),
        ("F1", e["f1"], r["f1"]),
        ("train windows", a["num_train_samples"], r["num_train_features"]),
        ("eval windows", e["num_samples"], r["num_eval_features"]),
        ("train windows/s", a["train_samples_per_s"], r["train_samples_per_s"]),
        ("eval windows/s", e["throughput"], r["eval_samples_per_s"]),
        ("fine-tune wall s", ours_train_wall, reference_wall),
    ]
    print(f"\n{'':18}{'bertbench':>12}{'HF reference':>14}{'ratio':>8}")
    for name, x, y in rows:
        print(f"{name:18}{x:12.2f}{y:14.2f}{x / y if y else float('nan'):8.2f}")
    delta = e["f1"] - r["f1"]
    verdict = "PASS" if delta >= -1.0 else "FAIL"
    print(f"\nF1 bertbench - reference = {delta:+.2f} ({verdict}: must be >= -1.0)")
    summary = {"delta_f1": delta, "verdict": verdict, "threads": args.threads, "rows": rows, "args": vars(args)}
    (args.output_root / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
