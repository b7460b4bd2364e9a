"""Every bertbench runtime x precision side by side with the peers, on real SQuAD windows.

Accuracy model: the MiniLM QA model fine-tuned by benchmarks/squad_finetune_vs_hf.py, on squad/dev.json (a
held-out slice of the SQuAD *train* split). Speed-only models: the bert-base and bert-large presets (random
weights) on the first questions of the same file. Each path runs in its own process (never two at once):

  peers      hf-eager (transformers eager FP32) and ort-int8 (optimum's default: fused graph, dynamic INT8),
             both with batches in input order padded to their longest member (benchmarks/peers.py);
  bertbench  `bertbench eval squad` for torch fp32 / int8 / bf16 and onnxruntime fp32 / int8 dynamic / static,
             with sorted batches padded to their longest member.

Also measures the FP32 GEMM roof (torch.matmul 2048^3, best of 5, same threads) and the FP32 paths' fraction of
it: FLOPs = layers * (tokens * (8h^2 + 4hi) + 4h * sum(batch * len^2)) for the padded tokens actually fed.

    python benchmarks/runtimes_squad.py --output runs/runtimes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench_cli import eval_squad
from bertbench.cache import Cache
from bertbench.models import BertForQuestionAnswering, load_model, resolve_model, save_model
from bertbench.tasks.squad import task as squad
from bertbench.tasks.squad.options import SquadOptions

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "squad"
ROOF = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(2 * 2048**3 / best / 1e9)
"""
PATHS = {
    "torch fp32": ["--backend", "torch"],
    "torch int8 dynamic": ["--backend", "torch", "--precision", "int8"],  # per-channel weights (the default)
    "torch bf16": ["--backend", "torch", "--precision", "bf16"],
    "ort fp32": ["--backend", "onnxruntime"],
    "ort int8 dynamic": ["--backend", "onnxruntime", "--precision", "int8"],  # per-channel, full range (default)
    # ORT's advice for AVX2 without VNNI: one scale per tensor, 7-bit weights
    "ort int8 dynamic, per-tensor 7-bit": [
        "--backend",
        "onnxruntime",
        "--precision",
        "int8",
        "--no-per-channel",
        "--reduce-range",
    ],
    "ort int8 static": ["--backend", "onnxruntime", "--precision", "int8", "--quantization", "static"],
}
SPEED_PATHS = ("torch fp32", "torch int8 dynamic", "ort fp32", "ort int8 dynamic", "ort int8 dynamic, per-tensor 7-bit")


def sh(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def run_or_reuse(command: list[str], path: str, model_key: str, args: argparse.Namespace) -> None:
    """Run one path, or keep the outputs an earlier run of this script left (--reuse, or outside --only)."""
    selected = not args.only or (path in args.only and (not args.only_models or model_key in args.only_models))
    if not args.reuse and selected:
        sh(command)


def flops(config, record: dict) -> float:
    """Forward FLOPs of the padded tokens fed (BertConfig.forward_flops; see the module docstring)."""
    return config.forward_flops(record["mean_padded_tokens"] * record["num_samples"], record["padded_tokens_x_len"])


def run_model(name: str, model: str, questions: int | None, paths: list[str], args, out: Path) -> list[dict]:
    """All paths on one model: rows of the results table."""
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(resolve_model(model), BertForQuestionAnswering)
    model_dir = out / "model"
    if not (args.reuse or args.only):
        save_model(loaded.model, loaded.tokenizer, model_dir)  # the very weights every path (peers too) loads
    dataset = squad.load_dataset(args.data, loaded.tokenizer, SquadOptions(), Cache(), max_examples=questions)
    features = dataset.features
    np.savez(
        out / "inputs.npz",
        input_ids=features.input_ids,
        token_type_ids=features.token_type_ids,
        lengths=features.lengths,
    )
    rows = []
    for peer in ("hf-eager", "ort-int8"):
        result = out / f"peer-{peer}.npz"
        run_or_reuse(
            [
                sys.executable,
                str(HERE / "peers.py"),
                peer,
                "--model-dir",
                str(model_dir),
                "--inputs",
                str(out / "inputs.npz"),
                "--output",
                str(result),
                "--threads",
                str(args.threads),
            ],
            f"peer {peer}",
            out.name,
            args,
        )
        timing = json.loads(result.with_suffix(".json").read_text())
        with np.load(result) as logits:
            _, metrics = squad.SQUAD.score(dataset, dict(logits), SquadOptions())
        rows.append({**timing, **metrics, "model": name, "path": f"peer {peer}"})
    limit = ["--max-samples", str(questions)] if questions else []
    for path in paths:
        extra = PATHS[path]
        if "static" in extra:
            extra = [*extra, "--calibration-data", str(args.calibration_data)]
        target = out / path.replace(" ", "-").replace(",", "")
        run_or_reuse(
            eval_squad(model_dir, args.data, target, args.threads, "--no-progress", *limit, *extra),
            path,
            out.name,
            args,
        )
        if not (target / "metrics.json").exists():
            print(f"no output for {out.name} / {path}: row left out", flush=True)
            continue
        record = json.loads((target / "metrics.json").read_text())
        record["flops"] = flops(loaded.model.config, record)
        rows.append({**record, "model_dir": record["model"], "model": name, "path": path})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/squad-vs-hf/bertbench", help="fine-tuned QA model (accuracy)")
    parser.add_argument("--data", type=Path, default=DATA / "dev.json")
    parser.add_argument("--calibration-data", type=Path, default=DATA / "train.json")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--output", type=Path, default=Path("runs/runtimes"))
    parser.add_argument("--base-questions", type=int, default=120)
    parser.add_argument("--large-questions", type=int, default=60)
    parser.add_argument("--reuse", action="store_true", help="rebuild the table from an earlier run's outputs")
    parser.add_argument("--only", nargs="+", default=[], help="rerun these paths, reuse the rest")
    parser.add_argument("--only-models", nargs="+", default=[], choices=("minilm", "bert-base", "bert-large"))
    args = parser.parse_args()

    roof_file = args.output / "roof.json"
    if args.reuse or args.only:
        roof = json.loads(roof_file.read_text())["roof_gflops"]
    else:
        roof = float(
            subprocess.run(
                [sys.executable, "-c", ROOF, str(args.threads)], capture_output=True, text=True, check=True
            ).stdout
        )
        args.output.mkdir(parents=True, exist_ok=True)
        roof_file.write_text(json.dumps({"roof_gflops": roof, "threads": args.threads}) + "\n")
    rows = run_model("minilm-l6 (fine-tuned)", args.model, None, list(PATHS), args, args.output / "minilm")
    rows += run_model(
        "bert-base (random)", "bert-base", args.base_questions, list(SPEED_PATHS), args, args.output / "bert-base"
    )
    rows += run_model(
        "bert-large (random)", "bert-large", args.large_questions, list(SPEED_PATHS), args, args.output / "bert-large"
    )

    print(f"\nFP32 GEMM roof (torch.matmul 2048^3, {args.threads} threads): {roof:.1f} GFLOP/s\n")
    header = "| model | path | samples/s | EM | F1 | rel. to our FP32 | x HF eager | x ORT INT8 peer | roof |"
    lines = [header, "|" + " --- |" * 9]
    for model in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == model]
        by_path = {r["path"]: r for r in group}
        hf, peer, ours = by_path["peer hf-eager"], by_path["peer ort-int8"], by_path["torch fp32"]
        for r in group:
            accurate = "random" not in model
            relative = r["f1"] / ours["f1"] if accurate else None
            util = r["flops"] / r["inference_s"] / 1e9 / roof if "flops" in r and "fp32" in r["path"] else None
            lines.append(
                f"| {model} | {r['path']} | {r['throughput']:.3g} | "
                + (f"{r['exact_match']:.2f} | {r['f1']:.2f} | {relative:.4f}" if accurate else "- | - | -")
                + f" | {r['throughput'] / hf['throughput']:.2f} | {r['throughput'] / peer['throughput']:.2f} | "
                + (f"{util:.0%}" if util else "-")
                + " |"
            )
            r["roof_fraction"] = util
    table = "\n".join(lines)
    print(table)
    (args.output / "summary.json").write_text(
        json.dumps({"roof_gflops": roof, "threads": args.threads, "rows": rows}, indent=2, default=str) + "\n"
    )
    (args.output / "table.md").write_text(f"FP32 GEMM roof: {roof:.1f} GFLOP/s ({args.threads} threads)\n\n{table}\n")


if __name__ == "__main__":
    main()
