"""Accuracy mode: run a task's evaluation data through a runtime, score it, guard it against FP32, record it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.bench.batching import RowSubset
from bertbench.bench.runner import InferenceResult, run_inference
from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import sha256_file
from bertbench.jobs.accuracy import choose_fp32_layers, guard, reference_metrics
from bertbench.jobs.common import configure_threads, prepare_output_dir
from bertbench.models import LoadedModel, load_model, resolve_model
from bertbench.results.console import info, print_result_table, warn
from bertbench.results.environment import load_average, machine_busy
from bertbench.results.record import build_record, write_metrics
from bertbench.runtimes import RuntimeOptions, create_runtime
from bertbench.tasks.options import TaskOptions
from bertbench.tasks.registry import TASKS


class AccuracyGuardError(BertbenchError):
    """--strict and the accuracy target was missed (the record is still written)."""

    exit_code = 3


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
    quantization: str = "dynamic"
    calibration_data: Path | None = None
    calibration_samples: int = 1000
    calibration_method: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = False
    compile: bool = False
    providers: tuple[str, ...] = ()
    export_dir: Path | None = None
    accuracy_target: float = 0.99
    strict: bool = False
    int8_fallback: bool = False  # keep the most sensitive layers in FP32 until the target is met
    tuning_samples: int = 200


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


def _calibration(config: EvalConfig, loaded: LoadedModel, cache: Cache) -> tuple[Any, Any, dict[str, Any]]:
    """(calibration sample, tuning set, facts) from --calibration-data, which must not be the evaluated file."""
    needs = config.precision == "int8" and (config.quantization == "static" or config.int8_fallback)
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
    task = TASKS[config.task]
    full = task.load_dataset(path, loaded.tokenizer, config.task_options, Cache(config.cache_dir), training=False)
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(full.num_samples, min(config.calibration_samples, full.num_samples), replace=False))
    tuning = None
    if config.int8_fallback:
        tuning = task.load_dataset(
            path, loaded.tokenizer, config.task_options, Cache(config.cache_dir), max_examples=config.tuning_samples
        )
    facts = {"calibration_data": str(path), "calibration_data_sha256": digest, "calibration_samples": len(rows)}
    return RowSubset(full, rows), tuning, facts


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
    calibration, tuning, calibration_facts = _calibration(config, loaded, cache)
    options = RuntimeOptions(
        precision=config.precision,
        device=config.device,
        threads=threads,
        quantization=config.quantization,
        calibration_method=config.calibration_method,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        compile=config.compile,
        providers=config.providers,
        cache_dir=config.cache_dir,
        export_dir=config.export_dir,
        calibration=calibration,
    )
    fallback: dict[str, Any] = {}
    if tuning is not None:
        keep, log = choose_fp32_layers(
            loaded, tuning, config.task, config.task_options, config.backend, options, config.accuracy_target, threads
        )
        options = replace(options, keep_fp32=keep)
        fallback = {"int8_fallback_layers": list(keep), "int8_fallback_search": log}
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
    accuracy = _accuracy(config, loaded, dataset, metrics, threads, cache)
    run_config = {
        "command": "eval",
        "task": config.task,
        **loaded.describe(),
        **dataset.describe(),
        "cache_dir": str(cache.root),
        "seed": config.seed,
        **calibration_facts,
    }
    record = build_record(run_config, {**metrics, **accuracy, **fallback})
    task.write_predictions(predictions, output_dir, dataset)
    write_metrics(output_dir, record)
    _report(record, loaded, config)
    if config.strict and accuracy.get("meets_accuracy_target") is False:
        raise AccuracyGuardError(
            f"{output_dir}/metrics.json: relative accuracy {accuracy['relative_accuracy']:.4f} is below the target "
            f"{config.accuracy_target} (--strict)"
        )
    return record


def _accuracy(
    config: EvalConfig, loaded: LoadedModel, dataset: Any, metrics: dict[str, Any], threads: int, cache: Cache
) -> dict[str, Any]:
    primary = TASKS[config.task].PRIMARY_METRIC
    if loaded.source.random_weights:
        return {"random_weights": True, "relative_accuracy": None}
    if primary not in metrics:  # unlabelled data: nothing to compare
        return {"relative_accuracy": None}
    if config.backend == "torch" and config.precision == "fp32":
        return guard(metrics, metrics, primary, config.accuracy_target)  # this run is its own reference
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    reference, hit = reference_metrics(loaded, dataset, config.task, config.task_options, data_key, threads, cache)
    return {**guard(metrics, reference, primary, config.accuracy_target), "reference_cache_hit": hit}


def _report(record: dict[str, Any], loaded: LoadedModel, config: EvalConfig) -> None:
    if loaded.source.random_weights:
        warn(f"model {config.model} has random weights: its accuracy is meaningless (speed figures are fine)")
    if loaded.fresh_head:
        warn(
            f"{', '.join(loaded.fresh_parameters)} of {config.model} freshly initialised (seed {config.seed}): "
            "the accuracy is that of an untrained head"
        )
    if record.get("emulated"):
        warn(f"--precision {config.precision} is emulated on this CPU (no native support): slow, not representative")
    if record.get("partial_int8"):
        warn(f"only {record['int8_linear_fraction']:.0%} of linear FLOPs run in INT8: a partial INT8 run")
    if record.get("meets_accuracy_target") is False and not loaded.source.random_weights:
        warn(
            f"accuracy guard: relative accuracy {record['relative_accuracy']:.4f} < target {config.accuracy_target} "
            f"(FP32 reference {record.get('reference_' + TASKS[config.task].PRIMARY_METRIC)})"
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
        "mlm_accuracy",
        "relative_accuracy",
        "throughput",
        "mean_tokens",
        "batch_size",
        "threads",
        "int8_linear_fraction",
    ]
    print_result_table(f"bertbench eval {config.task}", record, keys)
    info(f"wrote {config.output_dir}/metrics.json")
