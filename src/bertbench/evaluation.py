"""Evaluation as a library: run a task's prebuilt features through a runtime and score the outputs.

Every command that evaluates (`eval`, the per-epoch evaluations of `finetune` and `pretrain`, the accuracy guard,
`bench` in accuracy mode) goes through these functions, so one scorer serves every runtime.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from bertbench.bench.batching import RowSubset
from bertbench.bench.runner import InferenceResult, run_inference
from bertbench.bench.timing import LoadWindow, prepare_timed
from bertbench.models import BertHeadModel, LoadedModel, ModelSource, WordPieceTokenizer
from bertbench.runtimes.options import RuntimeOptions
from bertbench.runtimes.registry import create_runtime
from bertbench.tasks.base import EvalData, Task
from bertbench.training.distributed import DistEnv


def infer_dataset(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    runtime_options: RuntimeOptions,
    *,
    batch_size: int = 32,
    padding: str = "sorted",
    max_seq_length: int,
    show_progress: bool = True,
) -> tuple[InferenceResult, dict[str, Any]]:
    """Prepare a runtime on `loaded` and run every sample of `dataset`: (raw outputs + timing, run facts)."""
    runtime = create_runtime(runtime_options.backend)
    prepare_s = prepare_timed(runtime, loaded, runtime_options)
    with LoadWindow() as load:
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
    return result, {"prepare_s": prepare_s, **load.facts(), **runtime.describe()}


def evaluate_loaded(
    loaded: LoadedModel,
    dataset: EvalData,
    task: Task,
    runtime_options: RuntimeOptions,
    *,
    batch_size: int = 32,
    padding: str = "sorted",
    task_options: Any,
    show_progress: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Run `dataset` through a runtime and score it: (predictions, metrics + timing + run facts)."""
    result, facts = infer_dataset(
        loaded,
        dataset,
        task,
        runtime_options,
        batch_size=batch_size,
        padding=padding,
        max_seq_length=task_options.max_seq_length,
        show_progress=show_progress,
    )
    predictions, metrics = task.score(dataset, result.outputs, task_options)
    return predictions, {**metrics, **result.timing(), **facts}


def evaluate_sharded(
    model: BertHeadModel,
    tokenizer: WordPieceTokenizer,
    source: ModelSource,
    dataset: EvalData,
    task: Task,
    dist: DistEnv,
    runtime_options: RuntimeOptions,
    task_options: Any,
    batch_size: int,
) -> tuple[Any, dict[str, Any]]:
    """Each rank runs its shard, rank 0 gathers the outputs and scores them: (predictions, metrics) on rank 0,
    (None, {}) elsewhere. Throughput is samples over the slowest rank's time."""
    # array_split shards are disjoint and cover every row once: nothing is duplicated, nothing dropped.
    shard = np.array_split(np.arange(dataset.num_samples), dist.world_size)[dist.rank]
    view = LoadedModel(model, tokenizer, source, [])
    result, _ = infer_dataset(
        view,
        RowSubset(dataset, shard),
        task,
        replace(runtime_options, backend="torch"),
        batch_size=batch_size,
        padding="sorted",
        max_seq_length=task_options.max_seq_length,
        show_progress=False,
    )
    gathered = dist.gather((result.outputs, result.timed_s))
    if not dist.is_main:
        return None, {}
    outputs = {name: np.concatenate([g[0][name] for g in gathered]) for name in result.outputs}
    predictions, metrics = task.score(dataset, outputs, task_options)
    metrics["eval_samples_per_s"] = dataset.num_samples / max(g[1] for g in gathered)
    return predictions, metrics
