"""Performance mode, measured honestly: several `bertbench bench` configurations run interleaved (A B C A B C …)
over rounds, each in its own process, never two at once; the median and the spread (min–max) of each figure,
and every round's contention flag. Refuses to start on a busy machine.

    python benchmarks/bench_matrix.py --output runs/bench-matrix --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_cli import bertbench, other_cores_now

HERE = Path(__file__).resolve().parent
SQUAD = HERE.parent.parent / "shared" / "data" / "squad" / "dev.json"
SQUAD_TRAIN = SQUAD.with_name("train.json")


def path(
    model: str,
    *,
    int8: bool = False,
    batch: int = 32,
    scenario: str = "offline",
    instances: int = 1,
    null: bool = False,
    openvino: bool = False,
) -> list[str]:
    """The bench/eval arguments of one path: INT8 is ONNX Runtime dynamic, or OpenVINO's NNCF static (300
    training windows); instances > 1 pins one core each."""
    argv = ["--model", model, "--batch-size", str(batch)]
    if null:
        argv += ["--backend", "null"]
    elif openvino:
        argv += ["--backend", "openvino"]
        if int8:
            argv += ["--precision", "int8", "--quantization", "static", "--calibration-data", str(SQUAD_TRAIN)]
            argv += ["--calibration-samples", "300"]
    elif int8:
        argv += ["--backend", "onnxruntime", "--precision", "int8"]
    if scenario != "offline":
        argv += ["--scenario", scenario]
    if instances > 1:
        argv += ["--instances", str(instances), "--cores-per-instance", "1"]
    return argv


# name -> bench arguments (model, runtime, scenario, layout); every path on the same windows
CONFIGS: dict[str, list[str]] = {
    "null offline bs32": path("bert-tiny", null=True),
    "null singlestream": path("bert-tiny", null=True, batch=1, scenario="singlestream"),
    "minilm torch fp32 offline bs32": path("minilm-l6"),
    "minilm ort int8 offline bs32": path("minilm-l6", int8=True),
    "minilm torch fp32 singlestream": path("minilm-l6", batch=1, scenario="singlestream"),
    "minilm ort int8 singlestream": path("minilm-l6", int8=True, batch=1, scenario="singlestream"),
    "bert-base torch fp32 offline bs32 1x2": path("bert-base"),
    "bert-base torch fp32 offline bs32 2x1": path("bert-base", instances=2),
    "bert-base torch fp32 offline bs1 1x2": path("bert-base", batch=1),
    "bert-base torch fp32 offline bs1 2x1": path("bert-base", batch=1, instances=2),
    "bert-base ort int8 offline bs32": path("bert-base", int8=True),
    "bert-base torch fp32 singlestream": path("bert-base", batch=1, scenario="singlestream"),
    "bert-base ort int8 singlestream": path("bert-base", int8=True, batch=1, scenario="singlestream"),
}
# Instances as a speed lever: one two-thread instance vs two pinned single-thread instances, per fast path
for _model in ("minilm-l6", "bert-base"):
    for _name, _kind in (("torch fp32", {}), ("ort int8", {"int8": True}), ("openvino fp32", {"openvino": True})):
        for _layout, _instances in (("1x2", 1), ("2x1", 2)):
            _key = f"{_model.removesuffix('-l6')} {_name} offline bs32 {_layout}"
            CONFIGS.setdefault(_key, path(_model, instances=_instances, **_kind))
    for _layout, _instances in (("1x2", 1), ("2x1", 2)):
        _key = f"{_model.removesuffix('-l6')} openvino int8 offline bs32 {_layout}"
        CONFIGS[_key] = path(_model, instances=_instances, openvino=True, int8=True)
# eval's throughput of the same paths (batch 32, each window once)
EVALS: dict[str, list[str]] = {
    "minilm torch fp32 eval bs32": path("minilm-l6"),
    "minilm ort int8 eval bs32": path("minilm-l6", int8=True),
    "bert-base torch fp32 eval bs32": path("bert-base"),
    "bert-base ort int8 eval bs32": path("bert-base", int8=True),
}
FIGURES = ("throughput", "latency_p50_ms", "latency_p90_ms", "roof_fraction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("runs/bench-matrix"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--questions", type=int, default=120, help="first N questions of squad/dev.json")
    parser.add_argument("--min-duration", type=float, default=10.0)
    parser.add_argument("--only", nargs="+", default=[], help="run only these configuration names")
    args = parser.parse_args()
    others = other_cores_now()
    if others > 0.25:
        sys.exit(f"other processes use {others:.2f} cores: stop what runs (tests, training, helpers) and start again")
    args.output.mkdir(parents=True, exist_ok=True)
    common = ["--data", str(SQUAD), "--max-samples", str(args.questions), "--no-progress", "--overwrite"]
    plan = [(n, "bench", a) for n, a in CONFIGS.items()] + [(n, "eval", a) for n, a in EVALS.items()]
    plan = [p for p in plan if not args.only or p[0] in args.only]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
    for round_number in range(1, args.rounds + 1):
        for name, job, extra in plan:
            out = args.output / name.replace(" ", "_") / f"round{round_number}"
            if job == "bench":
                argv = bertbench(
                    "bench",
                    "squad",
                    *common,
                    "--min-duration",
                    str(args.min_duration),
                    *extra,
                    "--output-dir",
                    str(out),
                )
            else:
                argv = bertbench("eval", "squad", *common, *extra, "--output-dir", str(out))
            start = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            record = json.loads((out / "metrics.json").read_text())
            record["wall_s"] = time.perf_counter() - start
            results[name].append(record)
            print(
                f"round {round_number} {name}: {record['throughput']:.3g} samples/s"
                # the quiet check's verdict: the load average also counts our own previous run (it decays over minutes)
                f"{' (contended: ' + str(record.get('contention_reason')) + ')' if record.get('contended') else ''}",
                flush=True,
            )
    rows = []
    for name, records in results.items():
        row = {
            "path": name,
            "rounds": len(records),
            "contended_rounds": sum(bool(r.get("contended")) for r in records),
            "valid_rounds": sum(r.get("result_valid") is True for r in records),
        }
        for figure in FIGURES:
            values = [r[figure] for r in records if isinstance(r.get(figure), int | float)]
            if values:
                row[figure] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        rows.append(row)
    (args.output / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| path | samples/s median (min–max) | p50 ms | p90 ms | roof | rounds contended | LoadGen VALID |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        roof = row.get("roof_fraction")
        roof_text = f"{roof['median']:.0%}" if roof else "-"
        print(
            f"| {row['path']} | {_cell(row, 'throughput')} | {_cell(row, 'latency_p50_ms')} | "
            f"{_cell(row, 'latency_p90_ms')} | {roof_text} | "
            f"{row['contended_rounds']}/{row['rounds']} | "
            f"{row['valid_rounds']}/{row['rounds'] if not row['path'].endswith('eval bs32') else '-'} |"
        )


def _cell(row: dict, figure: str) -> str:
    value = row.get(figure)
    if not value:
        return "-"
    return f"{value['median']:.3g} ({value['min']:.3g}–{value['max']:.3g})"


if __name__ == "__main__":
    main()
