"""The evaluations during training: every rank scores its own shard of the evaluation set, rank 0 gathers and
scores the whole (the distribution is the training job's business, not the evaluation library's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertbench.evaluation import infer_dataset
from bertbench.models import BertHeadModel, LoadedModel, ModelSource, WordPieceTokenizer
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.base import EvalData, RowSubset, Task
from bertbench.training.distributed import DistEnv


def evaluate_sharded(
    model: BertHeadModel,
    tokenizer: WordPieceTokenizer,
    source: ModelSource,
    dataset: EvalData,
    task: Task,
    dist: DistEnv,
    placement: Placement,
    task_options: Any,
    batch_size: int,
) -> tuple[Any, dict[str, Any]]:
    """Each rank runs its shard on PyTorch FP32, rank 0 gathers the outputs and scores them: (predictions, metrics)
    on rank 0, (None, {}) elsewhere. Throughput is samples over the slowest rank's time."""
    # array_split shards are disjoint and cover every row once: nothing is duplicated, nothing dropped.
    shard = np.array_split(np.arange(dataset.num_samples), dist.world_size)[dist.rank]
    view = LoadedModel(model, tokenizer, source, [])
    result, _ = infer_dataset(
        view,
        RowSubset(dataset, shard),
        task,
        RuntimeOptions(backend="torch"),
        placement,
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
