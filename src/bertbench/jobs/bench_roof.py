"""`bertbench bench --roof`: this machine's quiet FP32 GEMM roof at 1..N threads (cached per CPU model and
threads), the yardstick every timed figure's utilisation is measured against."""

from __future__ import annotations

from bertbench.bench.quiet import measure_roof
from bertbench.cache import Cache
from bertbench.configs import BenchRoofConfig
from bertbench.console import warn
from bertbench.errors import UsageError
from bertbench.hardware import available_cores
from bertbench.results.console import print_result_table
from bertbench.results.record import RunRecord
from bertbench.tasks.registry import SERVED_TASKS


def run_roof(config: BenchRoofConfig) -> list[RunRecord]:
    """`bertbench bench --roof`: the quiet FP32 GEMM roof at 1..N threads, cached per CPU model and threads."""
    if not config.roof:
        raise UsageError(f"bench: choose a task ({', '.join(SERVED_TASKS)}), or pass --roof to measure the GEMM roof")
    cache = Cache(config.cache_dir)
    records = []
    for threads in range(1, available_cores() + 1):
        record = measure_roof(threads, cache.root)
        records.append(record)
        print_result_table(
            f"FP32 GEMM roof, {threads} thread(s)",
            record,
            [
                "cpu_model",
                "threads",
                "roof_gflops",
                "roof_median_gflops",
                "roof_min_gflops",
                "probe_gflops",
                "other_cpu_cores",
                "quiet",
            ],
        )
        if not record["quiet"]:
            warn(f"other processes used {record['other_cpu_cores']:.2f} cores: roof not cached; measure it again")
    return [RunRecord("bench-roof", {"threads": r["threads"], "cpu": r["cpu_model"]}, dict(r)) for r in records]
