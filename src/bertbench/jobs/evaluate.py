"""`bertbench eval`: run a task's evaluation data through a runtime, score it, guard it against FP32, record it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.accuracy import choose_fp32_layers, guard, reference_metrics
from bertbench.bench.batching import RowSubset
from bertbench.bench.timing import machine_busy
from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.evaluation import evaluate_loaded
from bertbench.io_utils import sha256_file
from bertbench.jobs.common import configure_threads, prepare_output_dir
from bertbench.jobs.configs import EvalConfig
from bertbench.models import LoadedModel, load_model, resolve_model
from bertbench.results.console import info, print_result_table, warn
from bertbench.results.record import RunRecord
from bertbench.tasks.base import EvalData, Task
from bertbench.tasks.registry import get_task


class AccuracyGuardError(BertbenchError):
    """--strict and the accuracy target was missed (the record is still written)."""

    exit_code = 3


def _calibration(
    config: EvalConfig, task: Task, loaded: LoadedModel, cache: Cache
) -> tuple[Any, EvalData | None, dict[str, Any]]:
    """(calibration sample, tuning set, facts) from --calibration-data, which must not be the evaluated file."""
    runtime = config.runtime
    needs = runtime.precision == "int8" and (runtime.quantization == "static" or config.int8_fallback)
    if not needs:
        return None, None, {}
    if config.calibration_data is None:
        raise BertbenchError(
            "--quantization static and --int8-fallback need --calibration-data FILE (training data, never the "
            "evaluated file)"
        )
    path = Path(config.calibration_data)
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    digest = sha256_file(path)
    if digest == sha256_file(config.data):
        raise BertbenchError(f"{path}: calibration data is the evaluated file ({config.data}); use training data")
    full = task.load_eval_data(path, loaded.tokenizer, config.task_options, cache)
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(full.num_samples, min(config.calibration_samples, full.num_samples), replace=False))
    tuning = None
    if config.int8_fallback:
        tuning = task.load_eval_data(
            path, loaded.tokenizer, config.task_options, cache, max_examples=config.tuning_samples
        )
    facts = {"calibration_data": str(path), "calibration_data_sha256": digest}
    return RowSubset(full, rows), tuning, facts


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """`bertbench eval`: writes predictions and metrics.json into the output directory; returns the record."""
    task = get_task(config.task)
    output_dir = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle)
    loaded = load_model(source, task.head, seed=config.seed)
    dataset = task.load_eval_data(
        config.data, loaded.tokenizer, config.task_options, cache, max_examples=config.max_samples
    )
    calibration, tuning, calibration_facts = _calibration(config, task, loaded, cache)
    options = replace(
        config.runtime,
        device=config.device,
        threads=threads,
        cache_dir=config.cache_dir,
        calibration=calibration,
    )
    fallback: dict[str, Any] = {}
    if tuning is not None:
        keep, log = choose_fp32_layers(loaded, tuning, task, config.task_options, options, config.accuracy_target)
        options = replace(options, keep_fp32=keep)
        fallback = {"int8_fallback_layers": list(keep), "int8_fallback_search": log}
    predictions, metrics = evaluate_loaded(
        loaded,
        dataset,
        task,
        options,
        batch_size=config.batch_size,
        padding=config.padding,
        task_options=config.task_options,
        show_progress=config.show_progress,
    )
    accuracy = _accuracy(config, task, loaded, dataset, metrics, threads, cache)
    record = RunRecord(
        "eval",
        {
            "task": config.task,
            **loaded.describe(),
            **dataset.describe(),
            **config.task_options.as_dict(),
            "batch_size": config.batch_size,
            "padding": config.padding,
            "threads": threads,
            "max_samples": config.max_samples,
            "cache_dir": str(cache.root),
            "seed": config.seed,
            **calibration_facts,
        },
        {**metrics, **accuracy, **fallback},
    )
    task.write_predictions(predictions, output_dir, dataset)
    record.write(output_dir)
    flat = record.flat()
    _report(flat, task, loaded, config)
    if config.strict and accuracy.get("meets_accuracy_target") is False:
        raise AccuracyGuardError(
            f"{output_dir}/metrics.json: relative accuracy {accuracy['relative_accuracy']:.4f} is below the target "
            f"{config.accuracy_target} (--strict)"
        )
    return flat


def _accuracy(
    config: EvalConfig,
    task: Task,
    loaded: LoadedModel,
    dataset: EvalData,
    metrics: dict[str, Any],
    threads: int,
    cache: Cache,
) -> dict[str, Any]:
    primary = task.primary_metric
    if loaded.source.random_weights:
        return {"relative_accuracy": None}  # random weights: no accuracy worth comparing
    if metrics.get(primary) is None:  # unlabelled data: nothing to compare
        return {"relative_accuracy": None}
    if config.runtime.backend == "torch" and config.runtime.precision == "fp32":
        return guard(metrics, metrics, primary, config.accuracy_target)  # this run is its own reference
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    reference, hit = reference_metrics(loaded, dataset, task, config.task_options, data_key, threads, cache)
    return {**guard(metrics, reference, primary, config.accuracy_target), "reference_cache_hit": hit}


def _report(record: dict[str, Any], task: Task, loaded: LoadedModel, config: EvalConfig) -> None:
    if loaded.source.random_weights:
        warn(f"model {config.model} has random weights: its accuracy is meaningless (speed figures are fine)")
    if loaded.fresh_head:
        warn(
            f"{', '.join(loaded.fresh_parameters)} of {config.model} freshly initialised (seed {config.seed}): "
            "the accuracy is that of an untrained head"
        )
    if record.get("emulated"):
        warn(
            f"--precision {config.runtime.precision} is emulated on this CPU (no native support): slow, "
            "not representative"
        )
    if record.get("partial_int8"):
        warn(f"only {record['int8_linear_fraction']:.0%} of linear FLOPs run in INT8: a partial INT8 run")
    if record.get("meets_accuracy_target") is False and not loaded.source.random_weights:
        warn(
            f"accuracy guard: relative accuracy {record['relative_accuracy']:.4f} < target {config.accuracy_target} "
            f"(FP32 reference {record.get('reference_' + task.primary_metric)})"
        )
    if machine_busy(record["load_avg_before"], record["cores_available"]):
        warn(f"the machine was busy before the run (load {record['load_avg_before']:.2f}): timings may be low")
    keys = [
        "model",
        "backend",
        "precision",
        "num_examples",
        "num_samples",
        *task.metrics,
        "relative_accuracy",
        "throughput",
        "mean_tokens",
        "batch_size",
        "threads",
        "int8_linear_fraction",
    ]
    print_result_table(f"bertbench eval {config.task}", record, keys)
    info(f"wrote {config.output_dir}/metrics.json")
