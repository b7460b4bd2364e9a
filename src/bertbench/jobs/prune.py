"""`bertbench prune`: importance on training data, the mask search under a FLOP budget, least-squares tuning, save.

Resumable: the importance pass (the costly phase) saves its running sums to DIR/PARTIAL every few seconds; with
--resume an interrupted prune continues from them. Finished importance is cached, so pruning the same parent to
another budget reuses it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from bertbench.accuracy import accuracy_facts
from bertbench.cache import Cache
from bertbench.configs import PruneConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError
from bertbench.evaluation import evaluate_loaded
from bertbench.hardware import configure_threads
from bertbench.io_utils import atomic_write_bytes, sha256_file
from bertbench.jobs.common import prepare_output_dir
from bertbench.models import LoadedModel, load_model, resolve_model, save_model
from bertbench.models.loading import ModelSource
from bertbench.models.pruning import prune_model
from bertbench.progress import announce, progress_bar
from bertbench.pruning.distill import distill
from bertbench.pruning.importance import Importance, fisher_importance
from bertbench.pruning.search import BudgetError, check_budget, search_masks
from bertbench.pruning.tuning import tune_masks
from bertbench.results.console import print_result_table
from bertbench.results.record import RunRecord
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.base import Task, TrainData
from bertbench.tasks.registry import get_task

PARTIAL = "importance-partial.safetensors"
SAVE_EVERY_ENV = "BERTBENCH_PRUNE_SAVE_EVERY_S"  # seconds between partial importance saves (default 10)
TABLE_KEYS = (
    "model",
    "flops_fraction",
    "heads_per_layer",
    "neurons_per_layer",
    "pruned_parameters",
    "f1",
    "accuracy",
    "relative_accuracy",
    "wall_s",
)


def run_prune(config: PruneConfig) -> RunRecord:
    """Prune `config.model` to `config.flops` of its FLOPs and save it in Hugging Face format; returns the record."""
    wall_start = time.perf_counter()
    task = get_task(config.task)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle)
    _check_inputs(config, source)
    seq_len = config.task_options.max_seq_length
    try:  # the budget is checked before any costly work and before the output directory is made
        check_budget(source.config, config.flops, seq_len)
    except BudgetError as exc:
        raise BertbenchError(f"model {config.model}: {exc}") from None
    output_dir = _prepare_output(config)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    announce("loading the model and the training data")
    parent = load_model(source, task.head, seed=config.seed)
    if parent.fresh_head:
        warn(
            f"{', '.join(parent.fresh_parameters)} of {config.model} freshly initialised: importance is that of an "
            "untrained head (pruning for speed only)"
        )
    train = task.load_train_data(config.train, parent.tokenizer, config.task_options, cache, config.seed)
    rows = _sample(train, config.importance_samples, config.seed)
    importance, importance_hit = _importance(config, task, parent, train, rows, output_dir, cache)
    plan = search_masks(
        importance.heads.float(), importance.neurons.float(), parent.model.config, config.flops, seq_len
    )
    pruned = prune_model(parent.model, plan.remove_heads, plan.keep_neurons)
    tuning_log: list[dict[str, float]] = []
    if not config.no_tuning:
        tuning_rows = _sample(train, config.tuning_samples, config.seed + 1)
        batches = [
            _inputs(train, tuning_rows[i : i + config.batch_size])
            for i in range(0, len(tuning_rows), config.batch_size)
        ]
        steps = 2 * pruned.config.num_hidden_layers
        with progress_bar("mask tuning (least squares)", steps, config.show_progress) as advance:
            tuning_log = tune_masks(parent.model, pruned, batches, on_step=advance)
    distill_log: list[float] = []
    if config.distill_steps:
        with progress_bar(
            "distillation from the unpruned model",
            config.distill_steps,
            config.show_progress,
            fields="loss {task.fields[loss]:.4f}",
            initial={"loss": float("nan")},
        ) as advance:
            distill_log = distill(
                parent.model,
                pruned,
                train,
                config.distill_steps,
                config.batch_size,
                config.distill_learning_rate,
                config.distill_temperature,
                config.seed,
                on_step=lambda loss: advance(1, loss=loss),
            )
    save_model(pruned, parent.tokenizer, output_dir)
    (output_dir / PARTIAL).unlink(missing_ok=True)
    prune_s = time.perf_counter() - wall_start
    record = RunRecord(
        "prune",
        {
            "task": config.task,
            **parent.describe(),
            "parent_model_path": str(Path(source.tokenizer_dir).resolve()) if source.kind != "preset" else source.name,
            "parent_fingerprint": source.fingerprint,
            "parent_random_weights": source.random_weights,
            "train_data": str(config.train),
            "train_data_sha256": sha256_file(config.train),
            "flops_budget": config.flops,
            "importance_samples": len(rows),
            "tuning_samples": 0 if config.no_tuning else min(config.tuning_samples, train.num_samples),
            "distill_steps": config.distill_steps,
            "distill_learning_rate": config.distill_learning_rate,
            "distill_temperature": config.distill_temperature,
            "batch_size": config.batch_size,
            "eval_data": str(config.eval) if config.eval else None,
            **config.task_options.as_dict(),
            "threads": threads,
            "seed": config.seed,
            "cache_dir": str(cache.root),
        },
        {
            **plan.describe(),
            "removed_heads": {str(layer): heads for layer, heads in sorted(plan.remove_heads.items())},
            "kept_neurons": [indices.tolist() for indices in plan.keep_neurons],
            "pruned_parameters": sum(p.numel() for p in pruned.parameters()),
            "flops_per_window": pruned.config.flops_per_window(seq_len),
            "parent_flops_per_window": parent.model.config.flops_per_window(seq_len),
            "importance_cache_hit": importance_hit,
            "mask_tuning": tuning_log,
            "distill_losses": distill_log,
            "prune_s": prune_s,
            "wall_s": prune_s,
        },
    )
    record.write(output_dir)  # the pruned model is complete (and knows its parent) before it is scored
    if config.eval:
        record.metrics.update(_evaluate(config, task, output_dir, threads, cache))
        record.metrics["wall_s"] = time.perf_counter() - wall_start
        record.write(output_dir)
    flat = record.flat()
    print_result_table(f"bertbench prune {config.task}", flat, list(TABLE_KEYS))
    info(f"saved the pruned model to {output_dir} ({plan.flops_fraction:.3f} of the FLOPs per window)")
    return record


def _check_inputs(config: PruneConfig, source: ModelSource) -> None:
    if source.config.is_pruned:
        raise BertbenchError(
            f"model {config.model}: already pruned (config.json has bertbench_pruning); prune its parent with a "
            "smaller --flops instead"
        )
    if not Path(config.train).is_file():
        raise BertbenchError(f"{config.train}: file not found")
    if config.eval is not None:
        if not Path(config.eval).is_file():
            raise BertbenchError(f"{config.eval}: file not found")
        if sha256_file(config.eval) == sha256_file(config.train):
            raise BertbenchError(f"{config.train}: the training file is the evaluated file ({config.eval})")


def _prepare_output(config: PruneConfig) -> Path:
    """A new or --overwrite-n directory; --resume needs an interrupted prune's partial importance there."""
    path = Path(config.output_dir)
    if config.resume:
        if not (path / PARTIAL).is_file():
            raise BertbenchError(f"{path}: --resume, but it holds no interrupted prune ({PARTIAL})")
        return path
    if (path / PARTIAL).exists() and not config.overwrite:
        raise BertbenchError(f"{path}: holds an interrupted prune (pass --resume to continue or --overwrite)")
    directory = prepare_output_dir(path, overwrite=config.overwrite)
    if config.overwrite:  # what an earlier prune left; the run folder mark stays
        for stale in directory.iterdir():
            if stale.name in ("config.json", "model.safetensors", "metrics.json", PARTIAL):
                stale.unlink()
    return directory


def _sample(data: TrainData, count: int, seed: int) -> np.ndarray:
    """`count` rows drawn without replacement (all when fewer), ordered by length so batches pad little."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(data.num_samples, min(count, data.num_samples), replace=False)
    return rows[np.argsort(np.asarray(data.lengths)[rows], kind="stable")]


def _inputs(data: TrainData, rows: np.ndarray) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in data.training_batch(rows, 0).items()}


def _importance(
    config: PruneConfig,
    task: Task,
    parent: LoadedModel,
    train: TrainData,
    rows: np.ndarray,
    output_dir: Path,
    cache: Cache,
) -> tuple[Importance, bool]:
    """Importance from the cache, or computed (continuing a partial run under --resume) and cached."""
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

    def build(directory: Path) -> None:
        start = _read_partial(partial_path, key) if config.resume else None
        if start is not None:
            info(f"resuming the importance pass after {start.samples} of {len(rows)} samples")
        state = {"done": start.samples if start else 0, "saved": time.monotonic()}
        with progress_bar("importance (Fisher, training data)", len(rows), config.show_progress) as advance:
            advance(state["done"])

            def on_batch(running: Importance, done: int) -> None:
                advance(done - state["done"])
                state["done"] = done
                if time.monotonic() - state["saved"] > _save_every_s():
                    _write_partial(partial_path, running, key)
                    state["saved"] = time.monotonic()

            result = fisher_importance(parent.model, task, train, rows, config.batch_size, start, on_batch)
        _write_partial(directory / "importance.safetensors", result, key)

    entry, hit = cache.get_or_build("prune-importance", parts, build)
    importance = _read_partial(entry / "importance.safetensors", key)
    assert importance is not None
    return importance, hit


def _save_every_s() -> float:
    try:
        return max(0.0, float(os.environ.get(SAVE_EVERY_ENV, "10")))
    except ValueError:
        return 10.0


def _write_partial(path: Path, importance: Importance, key: str) -> None:
    tensors = {"heads": importance.heads.contiguous(), "neurons": importance.neurons.contiguous()}
    atomic_write_bytes(path, save(tensors, metadata={"samples": str(importance.samples), "key": key}))


def _read_partial(path: Path, key: str) -> Importance | None:
    """The running sums saved at `path` when they belong to the same inputs (`key`), else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in ("heads", "neurons")}
    except Exception:  # safetensors raises its own SafetensorError on a torn file: start over, never crash
        warn(f"{path}: unreadable; starting the importance pass over")
        return None
    if meta.get("key") != key:
        warn(f"{path}: from another model, data or sample; starting the importance pass over")
        return None
    return Importance(tensors["heads"], tensors["neurons"], int(meta.get("samples", 0)))


def _evaluate(config: PruneConfig, task: Task, output_dir: Path, threads: int, cache: Cache) -> dict[str, Any]:
    """The pruned model (as saved) on --eval in FP32 torch, guarded against its parent's FP32 on the same data."""
    announce("scoring the pruned model")
    loaded = load_model(resolve_model(str(output_dir)), task.head, seed=config.seed)
    dataset = task.load_eval_data(
        config.eval, loaded.tokenizer, config.task_options, cache, max_examples=config.max_eval_samples
    )
    options = RuntimeOptions()
    _, metrics = evaluate_loaded(
        loaded,
        dataset,
        task,
        options,
        Placement(threads=threads),
        task_options=config.task_options,
        show_progress=config.show_progress,
    )
    data_key = f"{sha256_file(config.eval)}:{config.max_eval_samples}"
    guard = accuracy_facts(loaded, dataset, task, config.task_options, metrics, options, threads, data_key, 0.99, cache)
    scored = {k: metrics.get(k) for k in (*task.metrics, "eval_samples_per_s") if k in metrics}
    return {**scored, **guard}
