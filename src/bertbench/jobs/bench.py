"""`bertbench bench`: performance mode. MLPerf LoadGen drives pinned inference instances over a task's prebuilt
features; every figure comes from LoadGen's own logs, every record says whether the machine was quiet.

This job orchestrates: one LoadGen test is `bench_run.py`, the compliance tests `bench_compliance.py`, accuracy
mode's scoring `bench_scoring.py`, the record `bench_record.py`, the roof command `bench_roof.py`; the layout, the
plan, LoadGen's metrics and the roof live in `bench/`, the KPI row in `results/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.accuracy import accuracy_references
from bertbench.bench.codec import LogFormat
from bertbench.bench.instances import InstancePool
from bertbench.bench.layout import Layout, plan_layout
from bertbench.bench.loadgen_conf import SCENARIO_NAMES, read_conf
from bertbench.bench.loadgen_metrics import performance_metrics, roof_fraction
from bertbench.bench.loadgen_run import SCENARIOS
from bertbench.bench.quiet import cached_roof, measure_roof
from bertbench.bench.setup import load_model_and_data
from bertbench.bench.worker import WorkerSpec
from bertbench.cache import Cache
from bertbench.calibration import check_calibration_file
from bertbench.configs import BenchConfig
from bertbench.console import info, warn
from bertbench.errors import AccuracyGuardError
from bertbench.hardware import available_cores
from bertbench.io_utils import sha256_file
from bertbench.jobs.bench_compliance import compliance_test
from bertbench.jobs.bench_record import BenchSettings, bench_record
from bertbench.jobs.bench_run import BenchRun, loadgen_pass
from bertbench.jobs.bench_scoring import score_accuracy_log
from bertbench.jobs.common import announce_data_problems, announce_model, prepare_output_dir
from bertbench.progress import announce, progress_bar
from bertbench.results.console import print_rows_table
from bertbench.results.kpi import kpi_table
from bertbench.results.record import RunRecord


def _conf_files(config: BenchConfig) -> tuple[frozenset[str], dict[str, Any]]:
    """--mlperf-conf and --user-conf, checked line by line before anything loads: (the keys --user-conf sets for BERT
    in this scenario, record facts)."""
    keys: frozenset[str] = frozenset()
    facts: dict[str, Any] = {}
    for name, path in (("mlperf_conf", config.mlperf_conf), ("user_conf", config.user_conf)):
        if path is None:
            continue
        found = read_conf(path, SCENARIOS[config.scenario])
        if name == "user_conf":
            keys = frozenset(found)
        facts[name] = str(Path(path).resolve())
        facts[f"{name}_sha256"] = sha256_file(path)
    assert set(SCENARIOS.values()) == set(SCENARIO_NAMES)
    return keys, facts


def _env(config: BenchConfig) -> dict[str, str]:
    return dict(item.split("=", 1) for item in config.env)


def _worker_specs(config: BenchConfig, layout: Layout) -> list[WorkerSpec]:
    return [
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
            device=config.device,
            runtime=config.runtime,
            calibration_data=config.calibration_data,
            calibration_samples=config.calibration_samples,
            max_seq_length=config.task_options.max_seq_length,
            log_format=LogFormat(config.output_dtype, config.output_transposed),
        )
        for i in range(layout.instances)
    ]


def run_bench(config: BenchConfig) -> list[RunRecord]:
    """Run one LoadGen test per batch size; writes metrics.json (and LoadGen's logs) for each; returns records."""
    layout = plan_layout(config.instances, config.cores_per_instance, config.threads, config.oversubscribe)
    conf_keys, conf_facts = _conf_files(config)
    output_dir = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
    cache = Cache(config.cache_dir)
    calibration_facts: dict[str, Any] = {}
    if config.runtime.static_int8:
        calibration_facts = check_calibration_file(config.calibration_data, config.data)
    announce("loading the model and the data")
    work = load_model_and_data(config, cache)
    announce_model(work.loaded, config.model, config.seed)
    announce_data_problems(work.dataset, config.strict_data)
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    accuracy = config.mode == "accuracy"
    if accuracy and not work.loaded.describe()["random_weights"]:
        # The FP32 references are computed now (or found in the cache), before the instances start.
        announce("the FP32 reference of the accuracy guard")
        accuracy_references(
            work.loaded,
            work.dataset,
            work.task,
            config.task_options,
            data_key,
            config.runtime,
            layout.total_threads,
            cache,
        )
    _ensure_roofs({layout.threads, min(layout.total_threads, available_cores())}, cache)
    run = BenchRun(
        config,
        work.task,
        work.dataset,
        layout,
        cache,
        InstancePool(_worker_specs(config, layout)),
        work.loaded.describe(),
        calibration_facts,
        work.loaded if accuracy else None,  # performance mode frees the weights
        data_key,
        config.mlperf_conf,
        config.user_conf,
        conf_keys,
        conf_facts,
    )
    del work
    records = []
    try:
        announce(f"starting {layout.instances} instance(s): model, features, runtime")
        run.pool.start(lambda i: info(f"instance {i} ready on cores {layout.cores[i]} ({layout.threads} threads)"))
        with progress_bar(
            f"bench {config.task} {config.scenario}", total=len(config.batch_size), enabled=config.show_progress
        ) as advance:
            for batch_size in config.batch_size:
                target = output_dir if len(config.batch_size) == 1 else output_dir / f"bs{batch_size}"
                records.append(_one_test(run, batch_size, target))
                advance(1)
    finally:
        run.pool.close()
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


def _one_test(run: BenchRun, batch_size: int, output_dir: Path) -> RunRecord:
    """One LoadGen test at `batch_size`: warm up, check the machine is quiet, run, read LoadGen's logs, record (and,
    with --compliance, the compliance test's runs and verdict)."""
    config, layout, pool = run.config, run.layout, run.pool
    output_dir.mkdir(parents=True, exist_ok=True)
    announce(f"warm-up at batch {batch_size}")
    warm = pool.warmup(batch_size, config.padding, config.scenario == "offline" and config.padding == "sorted")
    estimate = sum(rate for _, rate in warm)
    main = loadgen_pass(run, batch_size, output_dir / "loadgen", config.mode, estimate)
    plan, log_dir, watch = main.plan, main.log_dir, main.watch
    fp32_model = config.runtime.precision == "fp32" and config.runtime.backend != "null"
    metrics = {
        **performance_metrics(plan, main.summary, main.detail, main.stats, main.issued, main.wall_s),
        **roof_fraction(fp32_model, layout, main.stats, main.wall_s, run.cache.root),
        "prepare_s": max(r["prepare_s"] for r in pool.ready.values()),
        "warmup_s": max(w for w, _ in warm),
        "estimated_qps": estimate,
        "loadgen_settings": main.detail["settings"],
        **pool.ready[0]["runtime"],
        **watch.facts(),
        **main.load.facts(),
    }
    if metrics["contended"] and not watch.check.contended:
        warn(f"contended during the test ({metrics['contention_reason']}): recorded as contended: true")
    if config.mode == "accuracy":
        announce("scoring the accuracy log")
        metrics.update(score_accuracy_log(run, log_dir, output_dir))
    if config.compliance:
        metrics.update(compliance_test(run, batch_size, output_dir, estimate, main))
    settings = BenchSettings.of(config, layout, plan, batch_size, str(run.cache.root))
    record = bench_record(run, settings, metrics)
    record.write(output_dir)
    return record


def _print_summary(config: BenchConfig, records: list[dict[str, Any]]) -> None:
    print_rows_table(f"bertbench bench {config.task} ({config.mode})", kpi_table(records))
    for record in records:
        if record["result_valid"] is False:
            reasons = "; ".join(record["result_invalid_reasons"]) or "see its summary"
            warn(f"batch {record['batch_size']}: LoadGen says INVALID ({reasons}). {record['result_advice']}")
    info(f"wrote {config.output_dir}")
