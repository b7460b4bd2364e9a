"""LoadGen's logs -> a test's metrics: throughput and latency exactly as LoadGen measured them, its verdict with
its reasons, what the instances computed, and the FP32 roof fraction of the work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.bench.layout import Layout
from bertbench.bench.loadgen_run import TestPlan
from bertbench.bench.quiet import cached_roof
from bertbench.hardware import available_cores

LATENCY_PERCENTILES = {"latency_p50_ms": "50.00", "latency_p90_ms": "90.00", "latency_p99_ms": "99.00"}


def performance_metrics(
    plan: TestPlan,
    summary: dict[str, Any],
    detail: dict[str, Any],
    stats: list[dict[str, Any]],
    issued: int,
    wall_s: float,
) -> dict[str, Any]:
    """Throughput and latency as LoadGen measured them, validity with its reasons, per-instance counts."""
    results = detail["results"]
    if plan.scenario == "offline":
        throughput = summary.get("loadgen_samples_per_second")
    elif plan.scenario == "server":
        throughput = summary.get("loadgen_completed_samples_per_second")
    else:
        # Queries go one at a time: samples per query over the mean query latency (for SingleStream this is
        # LoadGen's own "QPS w/o loadgen overhead").
        per_query = 1 if plan.scenario == "singlestream" else plan.samples_per_query
        mean_ns = summary.get("loadgen_mean_latency_ns")
        throughput = per_query * 1e9 / mean_ns if mean_ns else None
    latencies = {
        key: summary[f"loadgen_{pct}_percentile_latency_ns"] / 1e6
        for key, pct in LATENCY_PERCENTILES.items()
        if f"loadgen_{pct}_percentile_latency_ns" in summary
    }
    if "loadgen_max_latency_ns" in summary:
        latencies["latency_max_ms"] = summary["loadgen_max_latency_ns"] / 1e6
    # AccuracyOnly runs judge no performance: LoadGen prints no result, and neither do we.
    valid = None if plan.mode == "accuracy" else summary.get("loadgen_result") == "VALID"
    # LoadGen prints a failed check as "<check> satisfied : NO": said the other way round, it cannot be misread.
    reasons = [
        f"{check.removesuffix(' satisfied').strip()} not satisfied" for check in summary["loadgen_failed_checks"]
    ]

    samples = sum(s["samples"] for s in stats)
    return {
        "throughput": throughput,
        **latencies,
        "result_valid": valid,
        "result_invalid_reasons": reasons if valid is False else [],
        "result_advice": advice(plan, summary, results) if valid is False else None,
        "loadgen_errors": detail["errors"],
        "loadgen_warnings": detail["warnings"],
        "target_qps": plan.target_qps if plan.scenario in ("offline", "server") else None,
        "num_samples": issued,
        "mean_tokens": sum(s["tokens"] for s in stats) / samples if samples else None,
        "mean_padded_tokens": sum(s["padded_tokens"] for s in stats) / samples if samples else None,
        "per_instance": [
            {k: s[k] for k in ("instance", "pid", "cores", "threads", "samples", "busy_s")} for s in stats
        ],
        "test_wall_s": wall_s,
        **{k: v for k, v in summary.items() if k not in ("loadgen_failed_checks",)},
    }


def advice(plan: TestPlan, summary: dict[str, Any], results: dict[str, Any]) -> str:
    """What to change for a VALID result, following from LoadGen's own figures: a latency bound that even the
    fastest query missed cannot be met at a lower QPS; otherwise LoadGen's recommendation."""
    fastest = summary.get("loadgen_min_latency_ns")
    bound = plan.target_latency_ms
    if plan.scenario == "server" and fastest is not None and bound and fastest / 1e6 > bound:
        return (
            f"even the fastest query took {fastest / 1e6:.1f} ms, above the {bound:g} ms bound: no target QPS can "
            "meet it; raise --target-latency-ms or run a faster path (precision, backend, batch size)"
        )
    recommendation = str(results.get("result_invalid_reason") or "").strip() or "; ".join(summary["loadgen_notes"])
    return f"LoadGen advises: {recommendation}" if recommendation else "see LoadGen's mlperf_log_summary.txt"


def roof_fraction(
    measures_fp32_model: bool, layout: Layout, stats: list[dict[str, Any]], wall_s: float, cache_root: Path
) -> dict[str, Any]:
    """FP32 runs of a model: achieved FLOP/s of the token positions fed over the quiet roof of the cores they ran
    on (`roof_fraction`; None for other precisions and the null backend, whose FLOPs are not FP32 work)."""
    flops = sum(s["flops"] for s in stats)
    achieved = flops / wall_s / 1e9 if wall_s > 0 else None
    facts: dict[str, Any] = {"flops": flops, "achieved_gflops": achieved, "roof_fraction": None}
    if not measures_fp32_model or not achieved:
        return facts
    threads = available_cores() if layout.oversubscribed else layout.threads
    roof = cached_roof(threads, cache_root)
    if roof is None:
        return {**facts, "roof_fraction_note": "no quiet roof cached (measure it with `bertbench bench --roof`)"}
    total = roof["roof_gflops"] * (1 if layout.oversubscribed else layout.instances)
    return {**facts, "roof_gflops_total": total, "roof_fraction": achieved / total}
