"""Every bertbench runtime x precision (and the INT8 variants) side by side with the peers, on real SQuAD windows,
measured so that a busy machine cannot fool it.

Models: the MiniLM QA model fine-tuned on squad/train.json (accuracy and speed, all of squad/dev.json) and the
bert-base preset (random weights: speed only, the first 120 questions). Paths:

  peers      hf-eager (transformers eager FP32), ort-int8 (optimum's default: fused graph, dynamic INT8) and
             openvino (OpenVINO at the CPU plugin's default precision: BF16 where the CPU has it, else FP32),
             batches in input order padded to their longest member (benchmarks/peers.py, imports no bertbench);
  bertbench  `bertbench eval squad` per path (sorted batches padded to their longest member, batch 32).

Protocol: refuse to start unless other processes use < 0.25 core; every round runs the GEMM roof and then every
path once, each in its own process, never two at once (A B C … A B C …); other processes' CPU use is watched
during each run and a run beside > 0.25 core of other work is marked contended. Reported per path: the median and
the min–max of samples/s over rounds; ratios to each peer, and to the strongest peer (the one with the highest
median samples/s on that model), are medians of per-round ratios (paired in time); F1 (deterministic: the same
every round, checked); FP32 paths' fraction of the same round's GEMM roof.

    python benchmarks/runtimes_squad.py --model runs/minilm-squad --output runs/runtimes --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_cli import bertbench, eval_squad, other_cores_now
from bertbench.bench.quiet import ROOF_REPEATS, ROOF_SIZE, OtherLoadMeter
from bertbench.cache import Cache
from bertbench.hardware import has_native_bf16
from bertbench.models import BertForQuestionAnswering, load_model, resolve_model, save_model
from bertbench.tasks.squad import task as squad
from bertbench.tasks.squad.options import SquadOptions

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "squad"
# the GEMM roof in a fresh process (bench's own probe: FP32 torch.matmul 2048^3, best of 5)
ROOF = (
    "import sys; from bertbench.bench.quiet import gemm_gflops; "
    f"print(gemm_gflops({ROOF_SIZE}, {ROOF_REPEATS}, int(sys.argv[1])))"
)
BUSY = 0.25  # cores of other work that make a run contended
ORT, OV, STATIC = ["--backend", "onnxruntime"], ["--backend", "openvino"], ["--quantization", "static"]
INT8 = ["--precision", "int8"]
# peer path -> (its ratio's key in summary.json, its column in table.md); every round runs the peers first
PEERS: dict[str, tuple[str, str]] = {
    "peer hf-eager": ("x_hf_eager", "× HF eager"),
    "peer ort-int8": ("x_ort_int8_peer", "× ORT INT8 peer"),
    "peer openvino": ("x_openvino_peer", "× OpenVINO peer"),
}
COLUMNS = (
    "model",
    "path",
    "samples/s median (min–max)",
    "EM",
    "F1",
    "ΔF1 vs our FP32",
    *(column for _, column in PEERS.values()),
    "× strongest peer",
    "roof",
    "contended rounds",
)
# path -> bertbench eval arguments; the INT8 defaults are per-channel signed 8-bit weights with INT8 attention and
# (ORT dynamic) per-batch activation scales (ORT's own DynamicQuantizeLinear)
PATHS: dict[str, list[str]] = {
    "torch fp32": ["--backend", "torch"],
    "torch fp32 compiled": ["--backend", "torch", "--compile"],
    "ort fp32": ORT,
    "openvino fp32": OV,
    "torch bf16": ["--backend", "torch", "--precision", "bf16"],
    "openvino bf16": [*OV, "--precision", "bf16"],  # only where the CPU has native BF16 (else refused)
    "torch int8 dynamic": ["--backend", "torch", *INT8],
    "torch int8 dynamic per-tensor": ["--backend", "torch", *INT8, "--no-per-channel"],
    "ort int8 dynamic": [*ORT, *INT8],
    "ort int8 dynamic per-tensor": [*ORT, *INT8, "--no-per-channel"],
    "ort int8 dynamic 7-bit": [*ORT, *INT8, "--reduce-range"],
    "ort int8 dynamic per-tensor 7-bit": [*ORT, *INT8, "--no-per-channel", "--reduce-range"],
    "ort int8 dynamic u8 weights": [*ORT, *INT8, "--int8-weights", "u8"],
    "ort int8 dynamic fp32 attention": [*ORT, *INT8, "--no-quantize-attention"],
    "ort int8 dynamic bs8": [*ORT, *INT8, "--batch-size", "8"],
    # ORT's own scales, one per batch (QAttention): a window's answer depends on its batch-mates (the default)
    "ort int8 dynamic per-batch": [*ORT, *INT8, "--int8-activations", "per-batch"],
    # one scale per window row: a window's answer never depends on its batch-mates
    "ort int8 dynamic per-token": [*ORT, *INT8, "--int8-activations", "per-token"],
    "ort int8 dynamic per-batch bs8": [*ORT, *INT8, "--int8-activations", "per-batch", "--batch-size", "8"],
    "ort int8 static qdq": [*ORT, *INT8, *STATIC],
    "ort int8 static qdq fp32 attention": [*ORT, *INT8, *STATIC, "--no-quantize-attention"],
    "openvino int8": [*OV, *INT8, *STATIC],
    "openvino int8 7-bit": [*OV, *INT8, *STATIC, "--reduce-range"],
}
# Performance mode (`bertbench bench`, LoadGen Offline, batch 32) of the fastest path: one two-thread instance, and
# two pinned single-thread instances (instances as a speed lever). F1 is that of the same artifact under `eval`.
BENCH_PATHS: dict[str, tuple[str, list[str]]] = {
    "ort int8 dynamic, bench offline 1x2": ("ort int8 dynamic", [*ORT, *INT8]),
    "ort int8 dynamic, bench offline 2x1": (
        "ort int8 dynamic",
        [*ORT, *INT8, "--instances", "2", "--cores-per-instance", "1"],
    ),
}
# Each pruned model (`--pruned DIR…`, `--pruned-base DIR…`: `bertbench prune` outputs of the model above) runs
# these paths as "pruned <folder name> <path>"; the peers stay the unpruned model's: "× HF eager" is against the
# original.
# INT8 at batch 32 and 8 (the two operating points), per-batch (the default) and per-token scales; OpenVINO
# BF16 where the CPU computes BF16 natively, else OpenVINO FP32 and NNCF INT8.
PRUNED_VARIANTS = (
    "torch fp32",
    "ort int8 dynamic",
    "ort int8 dynamic bs8",
    "ort int8 dynamic per-token",
    *(("openvino bf16",) if has_native_bf16() else ("openvino fp32", "openvino int8")),
)
PRUNED_BASE_VARIANTS = ("torch fp32", "ort int8 dynamic")
PRUNED: dict[str, tuple[Path, str]] = {}  # path name -> (the pruned model it runs, the variant of PATHS it runs)
# bert-base (speed only): the variants whose speed could differ; accuracy-only variants are left out
BASE_PATHS = (
    "torch fp32",
    "torch fp32 compiled",
    "ort fp32",
    "openvino fp32",
    "torch int8 dynamic",
    "ort int8 dynamic",
    "ort int8 dynamic per-tensor",
    "ort int8 dynamic u8 weights",
    "ort int8 dynamic fp32 attention",
    "ort int8 dynamic per-token",
    "ort int8 static qdq",
    "openvino int8",
)


def watched(command: list[str]) -> tuple[float, float]:
    """Run `command` (output hidden unless it fails) while watching other processes: (wall s, other cores)."""
    meter = OtherLoadMeter(count_reaped_children=True)
    start = time.perf_counter()
    child = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    others = meter.cores()
    if child.returncode:
        sys.exit(f"{' '.join(command)} failed ({child.returncode}):\n{child.stdout[-3000:]}")
    return wall, others


def prepare_model(name: str, model: str, questions: int | None, args: argparse.Namespace) -> tuple[Path, object]:
    """Save the weights every path (peers too) loads, and the windows the peers read."""
    out = args.output / name
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(resolve_model(model), BertForQuestionAnswering)
    save_model(loaded.model, loaded.tokenizer, out / "model")
    dataset = squad.load_dataset(args.data, loaded.tokenizer, SquadOptions(), Cache(), max_examples=questions)
    features = dataset.features
    np.savez(
        out / "inputs.npz",
        input_ids=features.input_ids,
        token_type_ids=features.token_type_ids,
        lengths=features.lengths,
    )
    return out, (loaded.model.config, dataset)


def run_path(out: Path, path: str, questions: int | None, calibration: int, args, round_number: int) -> dict:
    """One path once: its record (throughput, F1, padded tokens, …) plus the watch's figures."""
    target = out / path.replace(" ", "-") / f"round{round_number}"
    target.mkdir(parents=True, exist_ok=True)
    if path in PEERS:
        peer = path.split()[1]
        command = [sys.executable, str(HERE / "peers.py"), peer, "--model-dir", str(out / "model")]
        command += ["--inputs", str(out / "inputs.npz"), "--output", str(target / "logits.npz")]
        command += ["--threads", str(args.threads)]
    elif path in BENCH_PATHS:
        limit = ["--max-samples", str(questions)] if questions else []
        command = bertbench("bench", "squad", "--model", str(out / "model"), "--data", str(args.data), *limit)
        command += ["--output-dir", str(target), "--overwrite", "--no-progress", *BENCH_PATHS[path][1]]
    else:
        model_dir, variant = PRUNED.get(path, (out / "model", path))
        extra = PATHS[variant]
        if "static" in extra:
            extra = [*extra, "--calibration-data", str(args.calibration_data)]
            extra += ["--calibration-samples", str(calibration)]
        limit = ["--max-samples", str(questions)] if questions else []
        command = eval_squad(model_dir, args.data, target, args.threads, "--no-progress", *limit, *extra)
    waited = 0
    while other_cores_now() > BUSY and waited < 30:  # let a transient (a cron job, a page-cache flush) pass
        waited += 1
    wall, others = watched(command)
    if path in PEERS:
        record = json.loads((target / "logits.json").read_text())
        record["logits_path"] = str(target / "logits.npz")
    else:
        record = json.loads((target / "metrics.json").read_text())
    record.update({"wall_s": wall, "other_cpu_cores_during": others, "contended": others > BUSY})
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/minilm-squad", help="MiniLM fine-tuned on SQuAD (accuracy)")
    parser.add_argument("--data", type=Path, default=DATA / "dev.json")
    parser.add_argument("--calibration-data", type=Path, default=DATA / "train.json")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--output", type=Path, default=Path("runs/runtimes"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-questions", type=int, default=120)
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-base"], choices=("minilm", "bert-base"))
    parser.add_argument(
        "--paths", nargs="+", default=[], help="only these paths (peers and pruned models' paths always run)"
    )
    parser.add_argument("--pruned", nargs="+", type=Path, default=[], help="`bertbench prune` outputs of --model")
    parser.add_argument("--pruned-base", nargs="+", type=Path, default=[], help="prune outputs of bert-base")
    parser.add_argument("--resume", action="store_true", help="keep the finished runs of an earlier invocation")
    parser.add_argument("--summarise-only", action="store_true", help="with --resume: tabulate, run nothing")
    args = parser.parse_args()
    busy = 0.0 if args.summarise_only else other_cores_now(2.0)
    if busy > BUSY:
        sys.exit(f"other processes use {busy:.2f} cores: stop what runs (tests, training, helpers) and start again")

    plans = []
    if "minilm" in args.models:
        out, facts = prepare_model("minilm", args.model, None, args)
        pruned = _pruned_paths(args.pruned, PRUNED_VARIANTS)
        plans.append(("minilm-l6 (fine-tuned)", out, facts, None, 1000, [*PATHS, *BENCH_PATHS, *pruned]))
    if "bert-base" in args.models:
        out, facts = prepare_model("bert-base", "bert-base", args.base_questions, args)
        # 300 calibration samples: NNCF's default subset, and random weights have no accuracy to protect
        pruned = _pruned_paths(args.pruned_base, PRUNED_BASE_VARIANTS)
        plans.append(("bert-base (random)", out, facts, args.base_questions, 300, [*BASE_PATHS, *BENCH_PATHS, *pruned]))
    records: dict[tuple[str, str], list[dict]] = {}
    roofs: dict[int, float] = {}
    log = args.output / "runs.jsonl"  # every finished run, appended as it completes: an interrupted study keeps it
    done = set()
    if args.resume and log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry["path"] == "roof":
                roofs[entry["round"]] = entry["roof"]
            else:
                records.setdefault((entry["model"], entry["path"]), []).append(entry["record"])
                done.add((entry["round"], entry["model"], entry["path"]))
    elif log.exists():
        log.unlink()
    for round_number in range(1, 0 if args.summarise_only else args.rounds + 1):
        if round_number not in roofs:
            command = [sys.executable, "-c", ROOF, str(args.threads)]
            roofs[round_number] = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
            _append(log, {"round": round_number, "path": "roof", "roof": roofs[round_number]})
        roof = roofs[round_number]
        print(f"round {round_number}: GEMM roof {roof:.1f} GFLOP/s", flush=True)
        for name, out, _, questions, calibration, paths in plans:
            chosen = [p for p in paths if not args.paths or p in args.paths or p in PRUNED]
            for path in [*PEERS, *chosen]:
                if (round_number, name, path) in done:
                    continue
                record = run_path(out, path, questions, calibration, args, round_number)
                record["round_roof_gflops"] = roof
                records.setdefault((name, path), []).append(record)
                _append(log, {"round": round_number, "model": name, "path": path, "record": record})
                print(
                    f"round {round_number} {name} {path}: {record['throughput']:.3g} samples/s"
                    + (
                        f" (contended: other processes {record['other_cpu_cores_during']:.2f} cores)"
                        if record["contended"]
                        else ""
                    ),
                    flush=True,
                )
    summarise(plans, records, [roofs[r] for r in sorted(roofs)], args)


def _pruned_paths(directories: list[Path], variants: tuple[str, ...]) -> list[str]:
    """Register "pruned <budget> <variant>" paths for each pruned model directory; returns their names."""
    names = []
    for directory in directories:
        if not (directory / "metrics.json").is_file():
            sys.exit(f"{directory}: not a `bertbench prune` output (no metrics.json)")
        for variant in variants:
            name = f"pruned {directory.name} {variant}"  # a folder name: two prunes never share a path
            PRUNED[name] = (directory.resolve(), variant)
            names.append(name)
    return names


def pareto_front(points: list[tuple[str, float, float]]) -> set[str]:
    """Names of the points no other point beats on both speed and F1 (higher is better for both)."""
    front = set()
    for name, speed, f1 in points:
        if not any(s >= speed and f >= f1 and (s > speed or f > f1) for _, s, f in points):
            front.add(name)
    return front


def _append(log: Path, entry: dict) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps(entry, default=str) + "\n")


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _spread(values: list[float], digits: str = ".3g") -> str:
    return f"{statistics.median(values):{digits}} ({min(values):{digits}}–{max(values):{digits}})"


def _pruning_lines(name: str, config, model_rows: list[dict], records: dict) -> list[str]:
    """For each pruned path: its speed-up over the same path on the unpruned model (paired by round) against the
    FLOP reduction on the same windows; `realised` = speed-up / FLOP reduction (1.0: every FLOP saved is time)."""
    out = []
    for row in model_rows:
        if row["path"] not in PRUNED:
            continue
        base = PRUNED[row["path"]][1]  # the same path on the unpruned model
        ours, theirs = records.get((name, row["path"])), records.get((name, base))
        if not ours or not theirs:
            continue
        speedup = statistics.median(a["throughput"] / b["throughput"] for a, b in zip(ours, theirs, strict=False))
        first = ours[0]
        tokens, squares = first["mean_padded_tokens"] * first["num_samples"], first["padded_tokens_x_len"]
        reduction = config.forward_flops(tokens, squares) / _config_of(row["path"], config).forward_flops(
            tokens, squares
        )
        row.update({"speedup_vs_unpruned": speedup, "flop_reduction": reduction, "realised": speedup / reduction})
        out.append(
            f"| {name} | {row['path']}: × {base} unpruned {speedup:.2f}, FLOP reduction {reduction:.2f}× "
            f"(realised {speedup / reduction:.0%}) |" + " |" * (len(COLUMNS) - 2)
        )
    return out


def _config_of(path: str, config):
    """The architecture a path runs: a pruned model's own (fewer heads and neurons), else the model's."""
    if path not in PRUNED:
        return config
    from bertbench.models import BertConfig

    return BertConfig.from_hf_dict(json.loads((PRUNED[path][0] / "config.json").read_text()))


def _strongest_peer(name: str, records: dict) -> str | None:
    """The peer with the highest median samples/s on this model (None if no peer ran): the one to beat."""
    ran = [peer for peer in PEERS if records.get((name, peer))]
    if not ran:
        return None
    return max(ran, key=lambda peer: statistics.median([r["throughput"] for r in records[(name, peer)]]))


def _peer_ratios(name: str, runs: list[dict], records: dict) -> dict[str, float | str | None]:
    """A path's speed over each peer's and over the strongest peer's: medians of ratios paired by round, so a
    slow spell of the machine divides out. A peer with no runs (a resumed study from before it existed) gets None.
    """
    medians: dict[str, float | None] = {}
    for peer in PEERS:
        peer_runs = records.get((name, peer), [])
        paired = [r["throughput"] / p["throughput"] for r, p in zip(runs, peer_runs, strict=False)]
        medians[peer] = statistics.median(paired) if paired else None
    strongest = _strongest_peer(name, records)
    ratios: dict[str, float | str | None] = {key: medians[peer] for peer, (key, _) in PEERS.items()}
    ratios["strongest_peer"] = strongest
    ratios["x_strongest_peer"] = medians[strongest] if strongest else None
    return ratios


def _computes_fp32(path: str, record: dict) -> bool:
    """Whether a path's arithmetic is FP32, the only case where the FP32 GEMM roof is its ceiling: our fp32 paths,
    HF eager, and the OpenVINO peer only where its plugin chose f32 (on a BF16 CPU it computes in bf16)."""
    return "fp32" in path or path == "peer hf-eager" or record.get("inference_precision") == "f32"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _peer_notes(name: str, records: dict, strongest: str | None) -> list[str]:
    """Below the table: which peer "× strongest peer" divides by, and the precision the OpenVINO peer ran at (its
    plugin's choice, so the same command is a BF16 peer on one CPU and an FP32 peer on another)."""
    notes = [f"{name}: strongest peer = {strongest} (highest median samples/s)"] if strongest else []
    precisions = sorted({r.get("inference_precision", "?") for r in records.get((name, "peer openvino"), [])})
    if precisions:
        notes.append(f"{name}: peer openvino computed in {', '.join(precisions)} (the CPU plugin's default)")
    return notes


def summarise(plans: list, records: dict, roofs: list[float], args: argparse.Namespace) -> None:
    """Score every path, pair its rounds with the peers', and write summary.json and table.md."""
    lines = [
        f"GEMM roof (torch.matmul 2048^3, {args.threads} threads), per round: "
        + ", ".join(f"{r:.0f}" for r in roofs)
        + " GFLOP/s",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    rows = []
    notes = []
    for name, _, (config, dataset), _, _, paths in plans:
        scored = {}
        for path in [*PEERS, *paths]:
            runs = records.get((name, path))
            if not runs:
                continue
            if path in PEERS:
                with np.load(runs[0]["logits_path"]) as logits:
                    _, metrics = squad.SQUAD.score(dataset, dict(logits), SquadOptions())
                f1, em = metrics["f1"], metrics["exact_match"]
            elif path in BENCH_PATHS:
                em, f1 = scored.get(BENCH_PATHS[path][0], (None, None))
            else:
                f1s = {round(r["f1"], 6) for r in runs}
                if len(f1s) > 1:
                    print(f"note: {name} {path}: F1 differs between rounds {sorted(f1s)}", flush=True)
                f1, em = runs[0]["f1"], runs[0]["exact_match"]
            scored[path] = (em, f1)
        ours_f1 = scored.get("torch fp32", (None, None))[1]
        model_rows: list[dict] = []
        for path in [*PEERS, *paths]:
            runs = records.get((name, path))
            if not runs:
                continue
            em, f1 = scored[path]
            speeds = [r["throughput"] for r in runs]
            roof_fractions = [
                0.0
                if "inference_s" not in r
                else _config_of(path, config).forward_flops(
                    r["mean_padded_tokens"] * r["num_samples"], r["padded_tokens_x_len"]
                )
                / r["inference_s"]
                / 1e9
                / r["round_roof_gflops"]
                for r in runs
            ]
            accurate = "random" not in name
            row = {
                "model": name,
                "path": path,
                "throughput": speeds,
                "exact_match": em if accurate else None,
                "f1": f1 if accurate else None,
                "delta_f1_vs_torch_fp32": (f1 - ours_f1) if accurate and ours_f1 is not None else None,
                **_peer_ratios(name, runs, records),
                "roof_fraction": statistics.median(roof_fractions) if _computes_fp32(path, runs[0]) else None,
                "contended_rounds": sum(r["contended"] for r in runs),
                "rounds": len(runs),
                "other_cpu_cores_during": [r["other_cpu_cores_during"] for r in runs],
            }
            model_rows.append(row)
        # the speed-accuracy frontier of this model's paths (peers have F1 too: they compete)
        points = [(r["path"], statistics.median(r["throughput"]), r["f1"]) for r in model_rows if r["f1"] is not None]
        front = pareto_front(points)
        for row in model_rows:
            row["pareto"] = row["path"] in front
            em, f1, speeds = row["exact_match"], row["f1"], row["throughput"]
            lines.append(
                f"| {name} | {row['path']}{' ★' if row['pareto'] else ''} | {_spread(speeds)} | "
                + (f"{em:.2f} | {f1:.2f} | {_signed(row['delta_f1_vs_torch_fp32'])}" if f1 is not None else "- | - | -")
                + "".join(f" | {_ratio(row[key])}" for key, _ in PEERS.values())
                + f" | {_ratio(row['x_strongest_peer'])} | "
                + (f"{row['roof_fraction']:.0%}" if row["roof_fraction"] else "-")
                + f" | {row['contended_rounds']}/{row['rounds']} |"
            )
        rows.extend(model_rows)
        lines.extend(_pruning_lines(name, config, model_rows, records))
        notes.extend(_peer_notes(name, records, _strongest_peer(name, records)))
    lines.append("")
    lines.extend(notes)
    lines.append("★ = on the speed-F1 Pareto front of its model (no other path is both faster and more accurate)")
    table = "\n".join(lines)
    print("\n" + table)
    (args.output / "summary.json").write_text(
        json.dumps({"roofs_gflops": roofs, "threads": args.threads, "rows": rows}, indent=2, default=str) + "\n"
    )
    (args.output / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
