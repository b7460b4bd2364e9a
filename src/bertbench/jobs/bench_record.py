"""The record of one LoadGen test of `bench`: how the test was set up (`BenchSettings`, typed) beside the model's,
the data's and the task options' facts, and what it measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bertbench.bench.layout import Layout
from bertbench.bench.loadgen_run import TestPlan
from bertbench.configs import BenchConfig
from bertbench.jobs.bench_run import BenchRun
from bertbench.results.record import RunRecord


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """How one LoadGen test was set up (the config section of its record, beside model, data and task facts)."""

    scenario: str
    mode: str
    batch_size: int
    padding: str
    instances: int
    cores_per_instance: int
    threads: int
    oversubscribed: bool
    env: dict[str, str]
    min_duration_s: float | None
    min_query_count: int | None
    max_duration_s: float | None
    mlperf_defaults: bool
    output_dtype: str
    output_transposed: bool
    target_latency_ms: float | None
    samples_per_query: int | None  # MultiStream only
    max_samples: int | None
    cache_dir: str
    seed: int

    @classmethod
    def of(cls, config: BenchConfig, layout: Layout, plan: TestPlan, batch_size: int, cache_dir: str) -> BenchSettings:
        """The settings of the test at `batch_size` that `plan` describes."""
        return cls(
            scenario=config.scenario,
            mode=config.mode,
            batch_size=batch_size,
            padding=config.padding,
            instances=layout.instances,
            cores_per_instance=layout.cores_per_instance,
            threads=layout.threads,
            oversubscribed=layout.oversubscribed,
            env=dict(item.split("=", 1) for item in config.env),
            min_duration_s=plan.min_duration_s,
            min_query_count=plan.min_query_count,
            max_duration_s=plan.max_duration_s,
            mlperf_defaults=config.mlperf_defaults,
            output_dtype=config.output_dtype,
            output_transposed=config.output_transposed,
            target_latency_ms=plan.target_latency_ms,
            samples_per_query=plan.samples_per_query if config.scenario == "multistream" else None,
            max_samples=config.max_samples,
            cache_dir=cache_dir,
            seed=config.seed,
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as record keys."""
        return dataclasses.asdict(self)


def bench_record(run: BenchRun, settings: BenchSettings, metrics: dict[str, Any]) -> RunRecord:
    """The record of one test: task, model, data and task-option facts, the test's settings, the config files and
    calibration it used; then what it measured."""
    config = run.config
    return RunRecord(
        "bench",
        {
            "task": config.task,
            **run.model_facts,
            **run.dataset.describe(),
            **config.task_options.as_dict(),
            **settings.as_dict(),
            **run.conf_facts,
            **run.calibration_facts,
        },
        metrics,
    )
