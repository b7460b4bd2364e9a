"""Command lines the benchmark scripts run: bertbench in a fresh process per path (never two at once)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bertbench.bench.quiet import OtherLoadMeter


def run(command: list[str]) -> float:
    """Run a command, streaming its output; return its wall time."""
    print("+", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def other_cores_now(seconds: float = 1.0) -> float:
    """Cores that other processes keep busy right now (watched for `seconds`)."""
    meter = OtherLoadMeter()
    time.sleep(seconds)
    return meter.cores()


def bertbench(*args: str) -> list[str]:
    """`python -m bertbench ARGS` with this interpreter."""
    return [sys.executable, "-m", "bertbench", *args]


def eval_squad(model: str | Path, data: Path, output_dir: Path, threads: int, *extra: str) -> list[str]:
    """`bertbench eval squad` of one model on one file into a fresh output directory."""
    return bertbench(
        "eval",
        "squad",
        "--model",
        str(model),
        "--data",
        str(data),
        "--output-dir",
        str(output_dir),
        "--overwrite",
        "--threads",
        str(threads),
        *extra,
    )
