"""bertbench vs plain-transformers references on one NER set (WNUT-17) and one GLUE pair task (MRPC): same model,
data, hyper-parameters, seed, initial head and data order; and the run-to-run noise that says how close is close.

For each task, one after the other (never concurrently):
  1. `bertbench finetune` on the train file, evaluated on dev after the last epoch (saves its fresh head),
  2. the reference (benchmarks/ner_hf_reference.py or glue_pair_hf_reference.py) from bertbench's saved head,
  3. the reference again with `--noise-seeds` other seeds (own fresh head, own data order): the spread of its dev
     score is the run-to-run noise; ours matches when |ours - paired reference| is within that spread's range.

    python benchmarks/seed_tasks_vs_hf.py --output-root runs/seed-tasks-vs-hf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench_cli import bertbench, run

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
TASKS = {
    # name: (bertbench task, reference script, its extra options, train, dev, metric)
    "wnut17": ("ner", "ner_hf_reference.py", [], DATA / "wnut17" / "train.conll", DATA / "wnut17" / "dev.conll", "f1"),
    "mrpc": (
        "mrpc",
        "glue_pair_hf_reference.py",
        ["--task", "mrpc"],
        DATA / "glue" / "MRPC" / "train.tsv",
        DATA / "glue" / "MRPC" / "dev.tsv",
        "f1",
    ),
}


def reference(root: Path, command: list[str], seed: int, *head: str) -> dict:
    """Run a reference with `seed` (and bertbench's initial head, when given); its metrics.json."""
    out = root / f"reference-seed{seed}{'-paired' if head else ''}"
    run([*command, "--output-dir", str(out), "--seed", str(seed), *head])
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--output-root", type=Path, default=Path("runs/seed-tasks-vs-hf"))
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--noise-seeds", type=int, nargs="*", default=[43, 44])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    summary = {}
    for name in args.tasks:
        task, script, extra, train, dev, metric = TASKS[name]
        root = args.output_root / name
        shared = ["--learning-rate", str(args.learning_rate), "--epochs", str(args.epochs)]
        shared += ["--batch-size", str(args.batch_size), "--warmup-ratio", str(args.warmup_ratio)]
        shared += ["--weight-decay", str(args.weight_decay), "--threads", str(args.threads)]
        ours = root / "bertbench"
        run(
            bertbench(
                "finetune", task, "--model", "minilm-l6", "--train", str(train), "--eval", str(dev),
                "--output-dir", str(ours), "--overwrite", "--seed", str(args.seed), "--no-progress", *shared,
            )
        )  # fmt: skip

        command = [sys.executable, str(HERE / script), *extra, "--train", str(train), "--eval", str(dev), *shared]
        paired = reference(root, command, args.seed, "--init-head", str(ours / "initial_head.safetensors"))
        noise = [reference(root, command, seed)[metric] for seed in args.noise_seeds]
        mine = json.loads((ours / "metrics.json").read_text())[metric]
        scores = [paired[metric], *noise]
        spread = max(scores) - min(scores)
        delta = mine - paired[metric]
        summary[name] = {
            "metric": metric,
            "bertbench": mine,
            "reference_paired": paired[metric],
            "reference_other_seeds": dict(zip(args.noise_seeds, noise, strict=True)),
            "reference_spread": spread,
            "delta": delta,
            "within_noise": abs(delta) <= spread,
        }
        print(
            f"\n{name}: {metric} bertbench {mine:.4f}, reference (same seed and head) {paired[metric]:.4f}, "
            f"delta {delta:+.4f}; reference over seeds {[round(s, 4) for s in scores]} spread {spread:.4f} -> "
            f"{'within' if abs(delta) <= spread else 'OUTSIDE'} run-to-run noise"
        )
    args.output_root.mkdir(parents=True, exist_ok=True)
    (args.output_root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
