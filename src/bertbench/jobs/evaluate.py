"""Accuracy mode: run a task's evaluation data through a runtime, score it, record it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.bench.runner import InferenceResult, run_inference
from bertbench.cache import Cache
from bertbench.jobs.common import configure_threads, prepare_output_dir
from bertbench.models import LoadedModel, load_model, resolve_model
from bertbench.results.console import info, print_result_table, warn
from bertbench.results.environment import load_average, machine_busy
from bertbench.results.record import build_record, write_metrics
from bertbench.runtimes import RuntimeOptions, create_runtime
from bertbench.tasks.options import TaskOptions
from bertbench.tasks.registry import TASKS


@dataclass
class EvalConfig:
    """Everything `bertbench eval` takes."""

    task: str
    model: str
    data: Path
    output_dir: Path
    backend: str = "torch"
    precision: str = "fp32"
    device: str = "cpu"
    batch_size: int = 32
    padding: str = "sorted"
    threads: int | None = None
    cache_dir: Path | None = None
    max_samples: int | None = None
    seed: int = 42
    overwrite: bool = False
    allow_pickle: bool = False
    show_progress: bool = True
    task_options: TaskOptions = field(default_factory=TaskOptions)


def infer_dataset(
    loaded: LoadedModel,
    dataset: Any,
    task_name: str,
    runtime_options: RuntimeOptions,
    *,
    backend: str = "torch",
    batch_size: int = 32,
    padding: str = "sorted",
    max_seq_length: int,
    show_progress: bool = True,
) -> tuple[InferenceResult, dict[str, Any]]:
    """Prepare a runtime on `loaded` and run every sample of `dataset`: (raw outputs + timing, run facts)."""
    runtime = create_runtime(backend)
    start = time.perf_counter()
    runtime.prepare(loaded, runtime_options)
    prepare_s = time.perf_counter() - start
    load_before = load_average()
    result = run_inference(
        runtime,
        dataset,
        batch_size=batch_size,
        padding=padding,
        max_seq_length=max_seq_length,
        per_token_outputs=TASKS[task_name].PER_TOKEN_OUTPUTS,
        reduce_outputs=getattr(TASKS[task_name], "reduce_outputs", None),
        show_progress=show_progress,
        description=f"eval {task_name}",
    )
    facts = {
        "prepare_s": prepare_s,
        "batch_size": batch_size,
        "padding": padding,
        "threads": runtime_options.threads,
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
        **runtime.describe(),
    }
    return result, facts


def evaluate_loaded(
    loaded: LoadedModel,
    dataset: Any,
    task_name: str,
    runtime_options: RuntimeOptions,
    *,
    backend: str = "torch",
    batch_size: int = 32,
    padding: str = "sorted",
    task_options: TaskOptions,
    show_progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Run `dataset` through a runtime and score it: (predictions, metrics + timing + run facts)."""
    result, facts = infer_dataset(
        loaded,
        dataset,
        task_name,
        runtime_options,
        backend=backend,
        batch_size=batch_size,
        padding=padding,
        max_seq_length=task_options.max_seq_length,
        show_progress=show_progress,
    )
    predictions, metrics = TASKS[task_name].score(dataset, result.outputs, task_options)
    return predictions, {**metrics, **result.timing(), **facts}


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """`bertbench eval`: writes predictions and metrics.json into the output directory; returns the record."""
    task = TASKS[config.task]
    output_dir = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle)
    loaded = load_model(source, task.HEAD, seed=config.seed)
    dataset = task.load_dataset(
        config.data, loaded.tokenizer, config.task_options, cache, max_examples=config.max_samples
    )
    options = RuntimeOptions(precision=config.precision, device=config.device, threads=threads)
    predictions, metrics = evaluate_loaded(
        loaded,
        dataset,
        config.task,
        options,
        backend=config.backend,
        batch_size=config.batch_size,
        padding=config.padding,
        task_options=config.task_options,
        show_progress=config.show_progress,
    )
    run_config = {
        "command": "eval",
        "task": config.task,
        **loaded.describe(),
        **dataset.describe(),
        "cache_dir": str(cache.root),
        "seed": config.seed,
    }
    accuracy = {"relative_accuracy": None if source.random_weights else 1.0}
    record = build_record(run_config, {**metrics, **accuracy})
    task.write_predictions(predictions, output_dir, dataset)
    write_metrics(output_dir, record)
    _report(record, loaded, config)
    return record


def _report(record: dict[str, Any], loaded: LoadedModel, config: EvalConfig) -> None:
    if loaded.source.random_weights:
        warn(f"model {config.model} has random weights: its accuracy is meaningless (speed figures are fine)")
    if loaded.fresh_head:
        warn(
            f"{', '.join(loaded.fresh_parameters)} of {config.model} freshly initialised (seed {config.seed}): "
            "the accuracy is that of an untrained head"
        )
    if machine_busy(record["load_avg_before"], record["cores_available"]):
        warn(f"the machine was busy before the run (load {record['load_avg_before']:.2f}): timings may be low")
    keys = [
        "model",
        "backend",
        "precision",
        "num_examples",
        "num_samples",
        "exact_match",
        "f1",
        "accuracy",
        "throughput",
        "mean_tokens",
        "batch_size",
        "threads",
    ]
    print_result_table(f"bertbench eval {config.task}", record, keys)
    info(f"wrote {config.output_dir}/metrics.json")
