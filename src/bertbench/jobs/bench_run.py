"""One `bench` run's shared state and one LoadGen test of it (settings from flags and config files, an optional
audit config, the machine watched throughout): the unit the main test and the compliance tests are made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.bench.instances import InstancePool
from bertbench.bench.layout import Layout
from bertbench.bench.loadgen_logs import DETAIL, SUMMARY, TEST_USER_CONF, parse_detail, parse_summary
from bertbench.bench.loadgen_run import BatchingSut, TestPlan, build_settings, plan_test, run_test
from bertbench.bench.quiet import WatchedRun
from bertbench.bench.timing import LoadWindow
from bertbench.cache import Cache
from bertbench.configs import BenchConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.models import LoadedModel
from bertbench.progress import announce
from bertbench.tasks.base import EvalData, Task


@dataclass
class BenchRun:
    """What every test of one `bench` run shares."""

    config: BenchConfig
    task: Task
    dataset: EvalData
    layout: Layout
    cache: Cache
    pool: InstancePool
    model_facts: dict[str, Any]
    calibration_facts: dict[str, Any]
    scorer: LoadedModel | None  # accuracy mode: the model the guard scores against FP32 (else freed)
    data_key: str  # the evaluated data, as the guard's reference cache knows it
    mlperf_conf: Path | None = None  # --mlperf-conf: its lines go first into the user.conf LoadGen is handed
    user_conf: Path | None = None  # --user-conf: copied into the one user.conf LoadGen is handed
    conf_keys: frozenset[str] = frozenset()  # the settings --user-conf gives for BERT in this scenario
    conf_facts: dict[str, Any] = field(default_factory=dict)

    @property
    def reference_threads(self) -> int:
        """The FP32 reference runs on every core the instances use together."""
        return self.layout.total_threads


@dataclass
class LoadGenPass:
    """One LoadGen test and what it measured."""

    plan: TestPlan
    log_dir: Path
    summary: dict[str, Any]
    detail: dict[str, Any]
    stats: list[dict[str, Any]]
    issued: int
    wall_s: float
    watch: WatchedRun
    load: LoadWindow


def loadgen_pass(
    run: BenchRun,
    batch_size: int,
    log_dir: Path,
    mode: str,
    estimate: float,
    audit_config: Path | None = None,
    log_responses: bool = False,
    test05: bool = False,
) -> LoadGenPass:
    """Run one LoadGen test (settings from the flags and config files, then `audit_config`), watching the machine.
    Offline issues 1.1 x expected QPS x min duration samples at once: an estimate that underrated the machine (a
    warm-up's few batches, a reference run beside other work) makes the test end before its minimum duration.
    Where the target was bertbench's, not the user's, the test is planned again from the rate LoadGen measured, once."""
    test = _one_pass(run, batch_size, log_dir, mode, estimate, audit_config, log_responses, test05)
    if not ended_early(run, test):
        return test
    measured = test.summary["loadgen_samples_per_second"]
    info(f"batch {batch_size}: the test ended before its minimum duration; again at {measured:.1f} samples/s")
    return _one_pass(run, batch_size, log_dir, mode, measured, audit_config, log_responses, test05)


def ended_early(run: BenchRun, test: LoadGenPass) -> bool:
    """Whether an Offline performance test whose expected QPS bertbench chose failed only its minimum duration."""
    summary, plan = test.summary, test.plan
    ours = run.config.target_qps is None and "target_qps" not in run.conf_keys
    failed = [check.lower() for check in summary.get("loadgen_failed_checks", [])]
    return (
        ours
        and plan.scenario == "offline"
        and plan.mode == "performance"
        and summary.get("loadgen_result") == "INVALID"
        and bool(failed)
        and all(check.startswith("min duration") for check in failed)
        and bool(summary.get("loadgen_samples_per_second"))
    )


def _one_pass(
    run: BenchRun,
    batch_size: int,
    log_dir: Path,
    mode: str,
    estimate: float,
    audit_config: Path | None,
    log_responses: bool,
    test05: bool,
) -> LoadGenPass:
    config, layout, pool = run.config, run.layout, run.pool
    plan = plan_test(
        config.scenario,
        mode,
        run.dataset.num_samples,
        estimate,
        min_duration_s=config.min_duration,
        min_query_count=config.min_query_count,
        max_duration_s=config.max_duration,
        mlperf_defaults=config.mlperf_defaults,
        target_qps=config.target_qps,
        target_latency_ms=config.target_latency_ms,
        samples_per_query=config.samples_per_query,
        mlperf_conf=run.mlperf_conf,
        user_conf=run.user_conf,
        conf_keys=run.conf_keys,
        audit_config=audit_config,
        test05=test05,
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings = build_settings(plan, log_dir / TEST_USER_CONF)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # Accuracy mode, and TEST01's performance run, return every response's bytes (LoadGen logs those it samples).
    sut = BatchingSut(pool, run.dataset.lengths, batch_size, config.padding, log_responses or mode == "accuracy")
    with WatchedRun(layout.total_threads, run.cache.root, pool.pids) as watch, LoadWindow() as load:
        check = watch.check
        if check.contended:
            if config.require_quiet:
                raise BertbenchError(f"the machine is contended ({check.reason()}); --require-quiet refuses to time")
            warn(f"contended machine ({check.reason()}): this run is recorded as contended: true")
        least = f" (at least {plan.min_duration_s:g} s)" if plan.min_duration_s else ""
        announce(f"LoadGen {config.scenario} {mode} test at batch {batch_size}{least}")
        wall_s = run_test(sut, settings, run.dataset.num_samples, log_dir, plan.audit_config)
    if pool.failure:
        raise BertbenchError(f"{pool.failure} (during the {config.scenario} test at batch {batch_size})")
    summary, detail = parse_summary(log_dir / SUMMARY), parse_detail(log_dir / DETAIL)
    return LoadGenPass(plan, log_dir, summary, detail, pool.stats(), sut.issued, wall_s, watch, load)
