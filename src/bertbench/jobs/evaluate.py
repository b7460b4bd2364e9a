"""`bertbench eval`: run a task's evaluation data through a runtime, score it, guard it against FP32, record it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bertbench.accuracy import accuracy_facts, choose_fp32_layers
from bertbench.bench.setup import load_model_and_data
from bertbench.cache import Cache
from bertbench.calibration import calibration_sample, check_calibration_file
from bertbench.configs import EvalConfig
from bertbench.console import info, warn
from bertbench.errors import AccuracyGuardError
from bertbench.evaluation import evaluate_loaded
from bertbench.hardware import configure_threads
from bertbench.io_utils import sha256_file
from bertbench.jobs.common import announce_data_problems, announce_model, prepare_output_dir
from bertbench.models import LoadedModel
from bertbench.progress import announce
from bertbench.results.console import print_result_table
from bertbench.results.record import RunRecord
from bertbench.runtimes.options import Placement
from bertbench.tasks.base import EvalData, Task
from bertbench.tasks.labels import head_labels


def _calibration(
    config: EvalConfig, task: Task, loaded: LoadedModel, cache: Cache
) -> tuple[Any, EvalData | None, dict[str, Any]]:
    """(calibration sample, tuning set, facts) from --calibration-data, which must not be the evaluated file."""
    runtime = config.runtime
    if not (runtime.static_int8 or (runtime.precision == "int8" and config.int8_fallback)):
        return None, None, {}
    facts = check_calibration_file(config.calibration_data, config.data)
    path = Path(config.calibration_data)
    sample = calibration_sample(
        task, loaded.tokenizer, config.task_options, cache, path, config.calibration_samples, config.seed
    )
    tuning = None
    if config.int8_fallback:
        tuning = task.load_eval_data(
            path,
            loaded.tokenizer,
            config.task_options,
            cache,
            max_examples=config.tuning_samples,
            labels=head_labels(task, loaded.model.config),
        )
    return sample, tuning, facts


def run_eval(config: EvalConfig) -> RunRecord:
    """`bertbench eval`: writes predictions and metrics.json into the output directory; returns the record."""
    output_dir = prepare_output_dir(config.output_dir, overwrite=config.overwrite)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    announce("loading the model and the data")
    work = load_model_and_data(config, cache)
    task, loaded, dataset = work.task, work.loaded, work.dataset
    announce_data_problems(dataset, config.strict_data)
    calibration, tuning, calibration_facts = _calibration(config, task, loaded, cache)
    placement = Placement(config.device, threads, config.cache_dir, calibration)
    options = config.runtime
    fallback: dict[str, Any] = {}
    if tuning is not None:
        keep, log = choose_fp32_layers(
            loaded, tuning, task, config.task_options, options, placement, config.accuracy_target
        )
        options = replace(options, keep_fp32=keep)
        fallback = {"int8_fallback_layers": list(keep), "int8_fallback_search": log}
    predictions, metrics = evaluate_loaded(
        loaded,
        dataset,
        task,
        options,
        placement,
        batch_size=config.batch_size,
        padding=config.padding,
        task_options=config.task_options,
        show_progress=config.show_progress,
        watched=True,
    )
    data_key = f"{sha256_file(config.data)}:{config.max_samples}"
    accuracy = accuracy_facts(
        loaded, dataset, task, config.task_options, metrics, options, threads, data_key, config.accuracy_target, cache
    )
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
            f"{config.accuracy_target} (--strict)",
            [record],
        )
    return record


def _report(record: dict[str, Any], task: Task, loaded: LoadedModel, config: EvalConfig) -> None:
    announce_model(loaded, config.model, config.seed)
    if record.get("emulated"):
        warn(
            f"--precision {config.runtime.precision} is emulated on this CPU (no native support): slow, "
            "not representative"
        )
    if record.get("partial_int8"):
        warn(f"only {record['int8_linear_fraction']:.0%} of linear FLOPs run in INT8: a partial INT8 run")
    if record.get("meets_accuracy_target") is False and not loaded.source.random_weights:
        reference = record.get("reference_" + task.primary_metric)
        warn(
            f"accuracy guard: relative accuracy {record['relative_accuracy']:.4f} < target {config.accuracy_target} "
            f"(FP32 reference {task.primary_metric} {reference:.4g})"
        )
    if record.get("contended"):
        warn(f"contended machine ({record['contention_reason']}): the throughput is recorded as contended: true")
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
