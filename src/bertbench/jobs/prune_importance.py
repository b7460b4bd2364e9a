"""The importance pass of `bertbench prune`, resumable and cached: its running sums are saved to DIR/PARTIAL every
few seconds (an interrupted prune continues from them under --resume), and finished importance is cached, so that
pruning the same parent to another budget reuses it. A partial file is trusted only when its metadata and tensors
fit the inputs; anything else starts the pass over, with one line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save

from bertbench.cache import Cache
from bertbench.configs import PruneConfig
from bertbench.console import info, warn
from bertbench.holds import hold
from bertbench.io_utils import atomic_write_bytes, sha256_file
from bertbench.models import LoadedModel
from bertbench.progress import progress_bar
from bertbench.pruning.importance import Importance, fisher_importance
from bertbench.tasks.base import Task, TrainData

PARTIAL = "importance-partial.safetensors"
SAVE_EVERY_ENV = "BERTBENCH_PRUNE_SAVE_EVERY_S"  # seconds between partial importance saves (default 10)
IMPORTANCE = "importance.safetensors"


def importance_of(
    config: PruneConfig,
    task: Task,
    parent: LoadedModel,
    train: TrainData,
    rows: np.ndarray,
    output_dir: Path,
    cache: Cache,
) -> tuple[Importance, bool]:
    """Importance from the cache, or computed (continuing a partial run under --resume) and cached; (importance,
    whether the cache had it)."""
    parts = {
        "model": parent.source.fingerprint,
        "head": parent.model.architecture,
        "fresh": parent.fresh_parameters,
        "seed": config.seed,
        "task": config.task,
        "train": sha256_file(config.train),
        "options": config.task_options.as_dict(),
        "rows": rows.tolist(),
    }
    key = cache.key("prune-importance", parts)
    partial_path = output_dir / PARTIAL
    shape = _shape(parent)

    def build(directory: Path) -> None:
        start = read_partial(partial_path, key, shape, len(rows)) if config.resume else None
        if start is not None:
            info(f"resuming the importance pass after {start.samples} of {len(rows)} samples")
        state = {"done": start.samples if start else 0, "saved": time.monotonic(), "saves": 0}
        with progress_bar("importance (Fisher, training data)", len(rows), config.show_progress) as advance:
            advance(state["done"])

            def on_batch(running: Importance, done: int) -> None:
                advance(done - state["done"])
                state["done"] = done
                if time.monotonic() - state["saved"] > _save_every_s():
                    write_partial(partial_path, running, key)
                    state["saved"] = time.monotonic()
                    state["saves"] += 1
                    hold("importance-saved", state["saves"])  # a kill test's chosen point (bertbench.holds)

            result = fisher_importance(parent.model, task, train, rows, config.batch_size, start, on_batch)
        write_partial(directory / IMPORTANCE, result, key)

    entry, hit = cache.get_or_build("prune-importance", parts, build)
    importance = read_partial(entry / IMPORTANCE, key, shape, len(rows))
    assert importance is not None and importance.samples == len(rows), "the cache verified this entry"
    return importance, hit


def _shape(parent: LoadedModel) -> tuple[tuple[int, int], tuple[int, int]]:
    config = parent.model.config
    layers = config.num_hidden_layers
    return (layers, config.num_attention_heads), (layers, config.intermediate_size)


def _save_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get(SAVE_EVERY_ENV, "10")))
    except ValueError:
        return 10.0


def write_partial(path: Path, importance: Importance, key: str) -> None:
    """Running sums, the batches' gradients, the samples they cover and the inputs' key, written atomically."""
    tensors = {"heads": importance.heads.contiguous().cpu(), "neurons": importance.neurons.contiguous().cpu()}
    if importance.head_batches is not None and importance.neuron_batches is not None:
        tensors["head_batches"] = importance.head_batches.contiguous()
        tensors["neuron_batches"] = importance.neuron_batches.contiguous()
    atomic_write_bytes(path, save(tensors, metadata={"samples": str(importance.samples), "key": key}))


def read_partial(path: Path, key: str, shape: tuple[tuple[int, int], tuple[int, int]], total: int) -> Importance | None:
    """The running sums saved at `path` when they belong to the same inputs (`key`), have the model's shapes and
    cover between 0 and `total` samples; else None (with one line saying why the pass starts over)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not iterable)
    except Exception:  # safetensors raises its own SafetensorError on a torn file: start over, never crash
        warn(f"{path}: unreadable; starting the importance pass over")
        return None
    if meta.get("key") != key:
        warn(f"{path}: from another model, data or sample; starting the importance pass over")
        return None
    samples = meta.get("samples", "")
    if not (samples.isascii() and samples.isdecimal()) or not 0 <= int(samples) <= total:
        warn(f"{path}: its sample count {samples!r} is not between 0 and {total}; starting the importance pass over")
        return None
    heads, neurons = tensors.get("heads"), tensors.get("neurons")
    head_batches, neuron_batches = tensors.get("head_batches"), tensors.get("neuron_batches")
    if not _fits(heads, neurons, head_batches, neuron_batches, shape, int(samples)):
        warn(f"{path}: its sums do not fit this model (shape or non-finite values); starting the importance pass over")
        return None
    return Importance(heads.double(), neurons.double(), int(samples), head_batches, neuron_batches)


def _fits(
    heads: torch.Tensor | None,
    neurons: torch.Tensor | None,
    head_batches: torch.Tensor | None,
    neuron_batches: torch.Tensor | None,
    shape: tuple[tuple[int, int], tuple[int, int]],
    samples: int,
) -> bool:
    """Whether saved sums have the model's shapes and finite values, with a batch gradient for every batch done."""
    if heads is None or neurons is None or (tuple(heads.shape), tuple(neurons.shape)) != shape:
        return False
    tensors = [heads, neurons]
    if samples:  # batches were done: their gradients must be there (an older or torn file lacks them)
        if head_batches is None or neuron_batches is None or len(head_batches) != len(neuron_batches):
            return False
        if head_batches.shape[1:] != heads.shape or neuron_batches.shape[1:] != neurons.shape:
            return False
        tensors += [head_batches, neuron_batches]
    return all(bool(t.isfinite().all()) for t in tensors)
