"""`bertbench bench`: performance mode. MLPerf LoadGen drives pinned inference instances over a task's prebuilt
features; every figure comes from LoadGen's own logs, every record says whether the machine was quiet."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bertbench.accuracy import accuracy_facts, reference_metrics
from bertbench.bench.codec import assemble, decode_sample
from bertbench.bench.instances import InstancePool
from bertbench.bench.loadgen_logs import ACCURACY, DETAIL, SUMMARY, parse_detail, parse_summary, read_accuracy_log
from bertbench.bench.loadgen_run import BatchingSut, TestPlan, build_settings, run_test
from bertbench.bench.quiet import OtherLoadMeter, cached_roof, measure_roof, quiet_check
from bertbench.bench.timing import LoadWindow
from bertbench.bench.worker import WorkerSpec
from bertbench.cache import Cache
from bertbench.calibration import check_calibration_file
from bertbench.errors import AccuracyGuardError, BertbenchError, UsageError
from bertbench.hardware import allowed_cores, available_cores
from bertbench.io_utils import sha256_file
from bertbench.jobs.common import announce_data_problems, prepare_output_dir
from bertbench.jobs.configs import BenchConfig, BenchRoofConfig
from bertbench.models import LoadedModel, load_model, resolve_model
from bertbench.progress import progress_bar
from bertbench.results.console import info, print_result_table, print_rows_table, warn
from bertbench.results.record import RunRecord
from bertbench.tasks.base import EvalData, Task
from bertbench.tasks.registry import get_task

LATENCY_PERCENTILES = {"latency_p50_ms": "50.00", "latency_p90_ms": "90.00", "latency_p99_ms": "99.00"}
SERVER_SHARE = 0.5  # Server's default target: half the capacity measured at warm-up
# Offline's default expected QPS: twice the warm-up estimate (a random batch pads more than sorted batches do, so
# the estimate is low); LoadGen issues 1.1 x expected QPS x min duration samples, so a test rather runs long.
OFFLINE_SHARE = 2.0


@dataclass
class Layout:
    """Instances and the cores each is pinned to."""

    instances: int
    cores_per_instance: int
    threads: int
    cores: list[list[int]]
    oversubscribed: bool


def plan_layout(config: BenchConfig) -> Layout:
    """--instances / --cores-per-instance on the cores this process may use; more than exist needs
    --oversubscribe."""
    allowed = allowed_cores()
    if config.instances == "auto":
        per = config.cores_per_instance or 1
        count = max(1, len(allowed) // per)
    else:
        count = int(config.instances)
        per = config.cores_per_instance or max(1, len(allowed) // count)
    wanted = count * per
    if wanted > len(allowed) and not config.oversubscribe:
        raise UsageError(
            f"--instances {count} --cores-per-instance {per} needs {wanted} cores, this process may use "
            f"{len(allowed)} ({','.join(map(str, allowed))}); pass --oversubscribe to share cores"
        )
    cores = [[allowed[(i * per + j) % len(allowed)] for j in range(per)] for i in range(count)]
    return Layout(count, per, config.threads or per, cores, wanted > len(allowed))


def _env(config: BenchConfig) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config.env)


def run_roof(config: BenchRoofConfig) -> list[RunRecord]:
    """`bertbench bench --roof`: the quiet FP32 GEMM roof at 1..N threads, cached per CPU model and threads."""
    if not config.roof:
        raise UsageError("bench: choose a task (squad, sst2), or pass --roof to measure the GEMM roof")
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


def run_bench(config: BenchConfig) -> list[RunRecord]:
    """Run one LoadGen test per batch size; writes metrics.json (and LoadGen's logs) for each; returns records."""
    task = get_task(config.task)
    layout = plan_layout(config)
    output_dir = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
    cache = Cache(config.cache_dir)
    calibration_facts: dict[str, Any] = {}
    if config.runtime.precision == "int8" and config.runtime.quantization == "static":
        calibration_facts = check_calibration_file(config.calibration_data, config.data)
    loaded = load_model(resolve_model(config.model, allow_pickle=config.allow_pickle), task.head, seed=config.seed)
    dataset = task.load_eval_data(
        config.data, loaded.tokenizer, config.task_options, cache, max_examples=config.max_samples
    )
    announce_data_problems(dataset, config.strict_data)
    reference_runtime = replace(config.runtime, threads=layout.threads * layout.instances, cache_dir=config.cache_dir)
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    reference_path = not (config.runtime.backend == "torch" and config.runtime.precision == "fp32")
    if config.mode == "accuracy" and reference_path and not loaded.source.random_weights:
        # The FP32 reference is computed now (or found in the cache), before the instances start.
        reference_metrics(loaded, dataset, task, config.task_options, data_key, reference_runtime.threads, cache)
    model_facts = loaded.describe()
    scorer = loaded if config.mode == "accuracy" else None  # performance mode frees the weights
    del loaded
    specs = [
        WorkerSpec(
            instance=i,
            cores=layout.cores[i],
            threads=layout.threads,
            env=_env(config),
            model=config.model,
            allow_pickle=config.allow_pickle,
            seed=config.seed,
            task=config.task,
            task_options=config.task_options,
            data=config.data,
            max_samples=config.max_samples,
            cache_dir=config.cache_dir,
            runtime=replace(config.runtime, device=config.device),
            calibration_data=config.calibration_data,
            calibration_samples=config.calibration_samples,
            max_seq_length=config.task_options.max_seq_length,
        )
        for i in range(layout.instances)
    ]
    _ensure_roofs({layout.threads, min(layout.instances * layout.threads, available_cores())}, cache)
    pool = InstancePool(specs)
    records = []
    try:
        pool.start(lambda i: info(f"instance {i} ready on cores {layout.cores[i]} ({layout.threads} threads)"))
        with progress_bar(
            f"bench {config.task} {config.scenario}", total=len(config.batch_size), enabled=config.show_progress
        ) as advance:
            for batch_size in config.batch_size:
                target = output_dir if len(config.batch_size) == 1 else output_dir / f"bs{batch_size}"
                record = _one_test(
                    config,
                    task,
                    scorer,
                    dataset,
                    pool,
                    layout,
                    batch_size,
                    target,
                    cache,
                    model_facts,
                    calibration_facts,
                    reference_runtime,
                )
                records.append(record)
                advance(1)
    finally:
        pool.close()
    flats = [r.flat() for r in records]
    _print_summary(config, flats)
    failed = [r for r in flats if r.get("meets_accuracy_target") is False]
    if config.strict and failed:
        raise AccuracyGuardError(
            f"{output_dir}: relative accuracy {failed[0]['relative_accuracy']:.4f} is below the target "
            f"{config.accuracy_target} (--strict)",
            records,
        )
    return records


def _ensure_roofs(thread_counts: set[int], cache: Cache) -> None:
    """The quiet roof at these thread counts, measured now (before any instance runs) where none is cached."""
    for threads in sorted(thread_counts):
        if cached_roof(threads, cache.root) is None:
            roof = measure_roof(threads, cache.root)
            if roof["quiet"]:
                info(
                    f"measured this machine's quiet FP32 roof at {threads} thread(s): {roof['roof_gflops']:.1f} GFLOP/s"
                )
            else:
                warn(f"no quiet FP32 roof at {threads} thread(s) (the machine is busy): roof_fraction stays empty")


def _plan(config: BenchConfig, batch_size: int, estimate: float, num_samples: int) -> TestPlan:
    target_qps = config.target_qps
    if target_qps is None and config.scenario == "offline":
        target_qps = OFFLINE_SHARE * estimate
    elif target_qps is None and config.scenario == "server":
        target_qps = SERVER_SHARE * estimate
    latency = config.target_latency_ms
    if latency is None and config.scenario == "server":
        latency = 130.0  # MLPerf's BERT Server bound
    elif latency is None and config.scenario in ("singlestream", "multistream"):
        per_query = 1 if config.scenario == "singlestream" else config.samples_per_query
        latency = 1000.0 * per_query / max(estimate, 1e-9)
    return TestPlan(
        scenario=config.scenario,
        mode=config.mode,
        num_samples=num_samples,
        min_duration_s=config.min_duration,
        min_query_count=config.min_query_count,
        max_duration_s=config.max_duration,
        mlperf_defaults=config.mlperf_defaults,
        target_qps=target_qps,
        target_latency_ms=latency,
        samples_per_query=config.samples_per_query,
    )


def _one_test(
    config: BenchConfig,
    task: Task,
    scorer: LoadedModel | None,
    dataset: EvalData,
    pool: InstancePool,
    layout: Layout,
    batch_size: int,
    output_dir: Path,
    cache: Cache,
    model_facts: dict[str, Any],
    calibration_facts: dict[str, Any],
    reference_runtime: Any,
) -> RunRecord:
    output_dir.mkdir(parents=True, exist_ok=True)
    warm = pool.warmup(batch_size)
    estimate = sum(rate for _, rate in warm)
    probe_threads = min(layout.instances * layout.threads, available_cores())
    check = quiet_check(probe_threads, cache.root, pool.pids)
    if check.contended:
        if config.require_quiet:
            raise BertbenchError(f"the machine is contended ({check.reason()}); --require-quiet refuses to time")
        warn(f"contended machine ({check.reason()}): this run is recorded as contended: true")
    plan = _plan(config, batch_size, estimate, dataset.num_samples)
    log_dir = output_dir / "loadgen"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = build_settings(plan, log_dir)
    sut = BatchingSut(pool, dataset.lengths, batch_size, config.padding, config.mode == "accuracy")
    meter = OtherLoadMeter(pool.pids)
    with LoadWindow() as load:
        wall_s = run_test(sut, settings, dataset.num_samples, log_dir)
    others_during = meter.cores()
    if pool.failure:
        raise BertbenchError(f"{pool.failure} (during the {config.scenario} test at batch {batch_size})")
    stats = pool.stats()
    summary = parse_summary(log_dir / SUMMARY)
    detail = parse_detail(log_dir / DETAIL)
    metrics = {
        **_performance(config, plan, summary, detail, stats, sut.issued, wall_s),
        **_roof_fraction(config, layout, stats, wall_s, cache),
        "prepare_s": max(r["prepare_s"] for r in pool.ready.values()),
        "warmup_s": max(w for w, _ in warm),
        "estimated_qps": estimate,
        **pool.ready[0]["runtime"],
        **check.facts(),
        "other_cpu_cores_during": others_during,
        "contended": check.contended or others_during > 0.25,
        **load.facts(),
    }
    if metrics["contended"] and not check.contended:
        metrics["contention_reason"] = f"other processes used {others_during:.2f} cores during the test"
        warn(f"contended during the test ({metrics['contention_reason']}): recorded as contended: true")
    if config.mode == "accuracy":
        metrics.update(
            _score_accuracy_log(config, task, scorer, dataset, log_dir, output_dir, reference_runtime, cache)
        )
    record = RunRecord(
        "bench",
        {
            "task": config.task,
            **model_facts,
            **dataset.describe(),
            **config.task_options.as_dict(),
            "scenario": config.scenario,
            "mode": config.mode,
            "batch_size": batch_size,
            "padding": config.padding,
            "instances": layout.instances,
            "cores_per_instance": layout.cores_per_instance,
            "threads": layout.threads,
            "oversubscribed": layout.oversubscribed,
            "env": _env(config),
            "min_duration_s": config.min_duration,
            "min_query_count": config.min_query_count,
            "max_duration_s": config.max_duration,
            "mlperf_defaults": config.mlperf_defaults,
            "target_latency_ms": plan.target_latency_ms,
            "samples_per_query": plan.samples_per_query if config.scenario == "multistream" else None,
            "max_samples": config.max_samples,
            "cache_dir": str(cache.root),
            "seed": config.seed,
            **calibration_facts,
        },
        metrics,
    )
    record.write(output_dir)
    return record


def _performance(
    config: BenchConfig,
    plan: TestPlan,
    summary: dict[str, Any],
    detail: dict[str, Any],
    stats: list[dict[str, Any]],
    issued: int,
    wall_s: float,
) -> dict[str, Any]:
    """Throughput and latency as LoadGen measured them, validity with its reasons, per-instance counts."""
    results = detail["results"]
    if config.scenario == "offline":
        throughput = summary.get("loadgen_samples_per_second")
    elif config.scenario == "server":
        throughput = summary.get("loadgen_completed_samples_per_second")
    else:
        # Queries go one at a time: samples per query over the mean query latency (for SingleStream this is
        # LoadGen's own "QPS w/o loadgen overhead").
        per_query = 1 if config.scenario == "singlestream" else plan.samples_per_query
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
    valid = None if config.mode == "accuracy" else summary.get("loadgen_result") == "VALID"
    reasons = [*summary["loadgen_failed_checks"]]
    if results.get("result_invalid_reason"):
        reasons.append(str(results["result_invalid_reason"]).strip())
    samples = sum(s["samples"] for s in stats)
    return {
        "throughput": throughput,
        **latencies,
        "result_valid": valid,
        "result_invalid_reasons": reasons if valid is False else [],
        "loadgen_errors": detail["errors"],
        "loadgen_warnings": detail["warnings"],
        "target_qps": plan.target_qps if config.scenario in ("offline", "server") else None,
        "num_samples": issued,
        "mean_tokens": sum(s["tokens"] for s in stats) / samples if samples else None,
        "mean_padded_tokens": sum(s["padded_tokens"] for s in stats) / samples if samples else None,
        "per_instance": [
            {k: s[k] for k in ("instance", "pid", "cores", "threads", "samples", "busy_s")} for s in stats
        ],
        "test_wall_s": wall_s,
        **{k: v for k, v in summary.items() if k not in ("loadgen_failed_checks",)},
    }


def _roof_fraction(
    config: BenchConfig, layout: Layout, stats: list[dict[str, Any]], wall_s: float, cache: Cache
) -> dict[str, Any]:
    """FP32 runs: achieved FLOP/s of the token positions fed over the quiet roof of the cores they ran on."""
    flops = sum(s["flops"] for s in stats)
    achieved = flops / wall_s / 1e9 if wall_s > 0 else None
    facts: dict[str, Any] = {"flops": flops, "achieved_gflops": achieved, "roof_fraction": None}
    if config.runtime.precision != "fp32" or config.runtime.backend == "null" or not achieved:
        return facts
    threads = available_cores() if layout.oversubscribed else layout.threads
    roof = cached_roof(threads, cache.root)
    if roof is None:
        return {**facts, "roof_fraction_note": "no quiet roof cached (measure it with `bertbench bench --roof`)"}
    total = roof["roof_gflops"] * (1 if layout.oversubscribed else layout.instances)
    return {**facts, "roof_gflops_total": total, "roof_fraction": achieved / total}


def _score_accuracy_log(
    config: BenchConfig,
    task: Task,
    loaded: LoadedModel,
    dataset: EvalData,
    log_dir: Path,
    output_dir: Path,
    reference_runtime: Any,
    cache: Cache,
) -> dict[str, Any]:
    """LoadGen's accuracy log -> outputs in input order -> the task's own scorer (and the guard)."""
    logged = read_accuracy_log(log_dir / ACCURACY)
    samples = {index: decode_sample(data) for index, data in logged.items()}
    try:
        outputs = assemble(samples, dataset.num_samples, config.task_options.max_seq_length, task.per_token_outputs)
    except ValueError as exc:
        raise BertbenchError(f"{log_dir / ACCURACY}: {exc}") from None
    predictions, metrics = task.score(dataset, outputs, config.task_options)
    task.write_predictions(predictions, output_dir, dataset)
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    guard = accuracy_facts(
        loaded,
        dataset,
        task,
        config.task_options,
        metrics,
        reference_runtime,
        data_key,
        config.accuracy_target,
        cache,
    )
    return {**metrics, **guard, "accuracy_log_samples": len(samples)}


def _print_summary(config: BenchConfig, records: list[dict[str, Any]]) -> None:
    rows = [
        {
            "Model": r["model"],
            "Scenario": r["scenario"],
            "BatchSize": r["batch_size"],
            "Precision": r["precision"],
            "Backend": r["backend"],
            "Instances×Cores": f"{r['instances']}×{r['cores_per_instance']}",
            "samples/s": r["throughput"],
            "p90 ms": r.get("latency_p90_ms"),
            "valid": r["result_valid"],
            "contended": r["contended"],
            **({"F1": r.get("f1"), "accuracy": r.get("accuracy")} if config.mode == "accuracy" else {}),
        }
        for r in records
    ]
    print_rows_table(f"bertbench bench {config.task} ({config.mode})", rows)
    for record in records:
        if record["result_valid"] is False:
            warn(f"batch {record['batch_size']}: LoadGen says INVALID ({'; '.join(record['result_invalid_reasons'])})")
    info(f"wrote {config.output_dir}")
