"""Evaluation as a library: run a task's prebuilt features through a runtime and score the outputs.

Every command that evaluates (`eval`, the per-epoch evaluations of `finetune` and `pretrain`, the accuracy guard,
`bench` in accuracy mode) goes through these functions, so one scorer serves every runtime.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bertbench.bench.quiet import WatchedRun
from bertbench.bench.runner import InferenceResult, run_inference
from bertbench.bench.setup import start_runtime
from bertbench.bench.timing import LoadWindow
from bertbench.cache import Cache
from bertbench.models import LoadedModel
from bertbench.progress import announce
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.base import EvalData, Task


def infer_dataset(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    options: RuntimeOptions,
    placement: Placement,
    *,
    batch_size: int = 32,
    padding: str = "sorted",
    max_seq_length: int,
    show_progress: bool = True,
    watched: bool = False,
) -> tuple[InferenceResult, dict[str, Any]]:
    """Prepare a runtime on `loaded` and run every sample of `dataset`: (raw outputs + timing, run facts).
    `watched`: the timed inference carries the quiet check (a figure a record reports, not an inner evaluation)."""
    announce(f"preparing {options.backend} {options.precision}")
    runtime, prepare_s = start_runtime(loaded, options, placement)
    watch = WatchedRun(placement.threads, Cache(placement.cache_dir).root) if watched else contextlib.nullcontext()
    with watch, LoadWindow() as load:
        result = run_inference(
            runtime,
            dataset,
            batch_size=batch_size,
            padding=padding,
            max_seq_length=max_seq_length,
            per_token_outputs=task.per_token_outputs,
            reduce_outputs=task.reduce_outputs,
            show_progress=show_progress,
            description=f"eval {task.name}",
        )
    quiet = watch.facts() if isinstance(watch, WatchedRun) else {}
    return result, {"prepare_s": prepare_s, **load.facts(), **quiet, **runtime.describe()}


def evaluate_loaded(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    options: RuntimeOptions,
    placement: Placement,
    *,
    batch_size: int = 32,
    padding: str = "sorted",
    task_options: Any,
    show_progress: bool = True,
    watched: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Run `dataset` through a runtime and score it: (predictions, metrics + timing + run facts)."""
    result, facts = infer_dataset(
        loaded,
        dataset,
        task,
        options,
        placement,
        batch_size=batch_size,
        padding=padding,
        max_seq_length=task_options.max_seq_length,
        show_progress=show_progress,
        watched=watched,
    )
    predictions, metrics = task.score(dataset, result.outputs, task_options)
    return predictions, {**metrics, **result.timing(), **facts}
