"""Accuracy mode of `bench`: LoadGen's accuracy log decoded back into outputs in input order, scored by the
task's own scorer, and guarded against FP32 of the same model on the same data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.accuracy import accuracy_facts
from bertbench.bench.codec import LogFormat, assemble, decode_sample
from bertbench.bench.loadgen_logs import ACCURACY, read_accuracy_log
from bertbench.errors import BertbenchError
from bertbench.jobs.bench_run import BenchRun


def score_accuracy_log(run: BenchRun, log_dir: Path, output_dir: Path) -> dict[str, Any]:
    """LoadGen's accuracy log -> outputs in input order -> the task's own scorer (and the guard)."""
    config, task, dataset = run.config, run.task, run.dataset
    logged = read_accuracy_log(log_dir / ACCURACY)
    fmt = LogFormat(config.output_dtype, config.output_transposed)
    try:
        samples = {i: decode_sample(data, task.outputs, task.per_token_outputs, fmt) for i, data in logged.items()}
    except ValueError as exc:
        raise BertbenchError(f"{log_dir / ACCURACY}: {exc}") from None
    try:
        outputs = assemble(samples, dataset.num_samples, config.task_options.max_seq_length, task.per_token_outputs)
    except ValueError as exc:
        raise BertbenchError(f"{log_dir / ACCURACY}: {exc}") from None
    predictions, metrics = task.score(dataset, outputs, config.task_options)
    task.write_predictions(predictions, output_dir, dataset)
    guard = accuracy_facts(
        run.scorer,
        dataset,
        task,
        config.task_options,
        metrics,
        config.runtime,
        run.reference_threads,
        run.data_key,
        config.accuracy_target,
        run.cache,
    )
    return {**metrics, **guard, "accuracy_log_samples": len(samples)}
