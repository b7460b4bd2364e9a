"""What every timed path builds before its clock starts: the model with its task head, the task's prebuilt
features, and the runtime, prepared (load, export, quantize, compile). Used by `eval`, by `bench`'s parent and its
instances, and by every evaluation; the seconds a prepare takes are outside every timed region (`prepare_s`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bertbench.cache import Cache
from bertbench.models import LoadedModel, check_window_fits, load_model, resolve_model
from bertbench.runtimes.base import Runtime
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.runtimes.registry import create_runtime
from bertbench.tasks.base import EvalData, Task
from bertbench.tasks.labels import fit_task_labels, head_labels
from bertbench.tasks.registry import get_task


@dataclass
class ModelAndData:
    """A task, the model it runs and the features it runs on."""

    task: Task
    loaded: LoadedModel
    dataset: EvalData


class ModelDataRequest(Protocol):
    """What names a model and the data it runs on (`eval`'s and `bench`'s configs, an instance's spec)."""

    task: str
    model: str
    data: Path
    task_options: Any
    allow_pickle: bool
    seed: int
    max_samples: int | None


def load_model_and_data(request: ModelDataRequest, cache: Cache) -> ModelAndData:
    """Resolve and load the model with the task's head (fresh head parameters from the request's seed), then the
    data file's features (from the cache, built on a miss)."""
    task = get_task(request.task)
    source = resolve_model(request.model, allow_pickle=request.allow_pickle, cache_dir=cache.root)
    check_window_fits(source, request.task_options)
    source = fit_task_labels(task, source, request.data)
    loaded = load_model(source, task.head, seed=request.seed)
    dataset = task.load_eval_data(
        request.data,
        loaded.tokenizer,
        request.task_options,
        cache,
        max_examples=request.max_samples,
        labels=head_labels(task, loaded.model.config),
    )
    return ModelAndData(task, loaded, dataset)


def start_runtime(loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> tuple[Runtime, float]:
    """A runtime for `options.backend`, prepared on `loaded` (everything slow happens here, untimed by any
    throughput); returns it with the seconds the preparation took."""
    runtime = create_runtime(options.backend)
    start = time.perf_counter()
    runtime.prepare(loaded, options, placement)
    return runtime, time.perf_counter() - start
