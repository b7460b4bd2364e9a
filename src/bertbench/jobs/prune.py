"""`bertbench prune`: importance on training data, the mask search under a FLOP budget, least-squares tuning, an
optional distillation through the training loop, save, and an optional score against the parent.

Every input is read and checked before the first pass (the model, the budget, the training file and the file to
score); the importance pass is resumable and cached (prune_importance).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertbench.accuracy import accuracy_facts
from bertbench.bench.layer_latency import latency_table
from bertbench.cache import Cache
from bertbench.configs import PruneConfig
from bertbench.console import info
from bertbench.errors import BertbenchError
from bertbench.evaluation import evaluate_loaded
from bertbench.hardware import configure_threads
from bertbench.io_utils import check_not_evaluated, sha256_file
from bertbench.jobs.common import announce_data_problems, announce_model, check_device, prepare_output_dir
from bertbench.jobs.prune_importance import PARTIAL, importance_of
from bertbench.models import (
    BertHeadModel,
    LoadedModel,
    WordPieceTokenizer,
    check_window_fits,
    load_model,
    resolve_model,
    save_model,
)
from bertbench.models.loading import ModelSource
from bertbench.models.pruning import prune_model
from bertbench.progress import announce, progress_bar
from bertbench.pruning.distill import DistillationLoss
from bertbench.pruning.latency import LatencyTable
from bertbench.pruning.rearrange import rearrange_plan
from bertbench.pruning.search import BudgetError, PruningPlan, check_budget, search_masks, search_within
from bertbench.pruning.tuning import tune_masks
from bertbench.results.console import print_result_table
from bertbench.results.record import RunRecord
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.base import EvalData, Task, TrainData
from bertbench.tasks.labels import fit_task_labels, head_labels
from bertbench.tasks.registry import get_task
from bertbench.training.config import TrainConfig
from bertbench.training.distributed import DistEnv
from bertbench.training.loop import Trainer, TrainingDiverged

TABLE_KEYS = (  # what the terminal shows of the record
    "model",
    "flops_fraction",
    "latency_fraction",
    "flops_window",
    "heads_per_layer",
    "neurons_per_layer",
    "pruned_parameters",
    "f1",
    "accuracy",
    "relative_accuracy",
    "wall_s",
)
TRAIN_LOG = "train_log.jsonl"  # the distillation's steps, written by the training loop
PRUNE_OUTPUTS = ("config.json", "model.safetensors", "metrics.json", TRAIN_LOG, PARTIAL)  # what --overwrite clears


def run_prune(config: PruneConfig) -> RunRecord:
    """Prune `config.model` to `config.flops` of its FLOPs and save it in Hugging Face format; returns the record."""
    wall_start = time.perf_counter()
    task = get_task(config.task)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle, cache_dir=config.cache_dir)
    _check_inputs(config, source)
    check_window_fits(source, config.task_options)
    check_device(config.device)
    output_dir = _prepare_output(config)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    announce("loading the model and the data")
    source = fit_task_labels(task, source, config.train)
    parent = load_model(source, task.head, seed=config.seed)
    announce_model(parent, config.model, config.seed, use="the pruned model is random too")
    labels = head_labels(task, parent.model.config)
    train = task.load_train_data(config.train, parent.tokenizer, config.task_options, cache, config.seed, labels=labels)
    announce_data_problems(train, config.strict_data)
    scored = _load_scored(config, task, parent, cache)  # a bad --eval file fails now, not after the work
    parent.model.to(config.device)
    rows = _sample(train, config.importance_samples, config.seed)
    importance, importance_hit = importance_of(config, task, parent, train, rows, output_dir, cache)
    window = _flops_window(config, train)
    heads, neurons = importance.heads.float(), importance.neurons.float()
    table: LatencyTable | None = None
    if config.latency is not None:
        table, table_hit = latency_table(
            parent,
            config.latency_options(),
            Placement(device=config.device, threads=threads, cache_dir=cache.root),
            round(window),
            config.latency_batch_size,
            cache,
        )
        try:
            plan = search_within(heads, neurons, table.costs(), config.latency)
        except BudgetError as exc:
            raise BertbenchError(f"--latency {config.latency}: {exc} on the measured table") from None
    else:
        plan = search_masks(heads, neurons, parent.model.config, config.flops, window)
    if not config.no_rearrangement:
        assert importance.head_batches is not None and importance.neuron_batches is not None, "read_partial checks"
        plan.remove_heads, plan.keep_neurons, costs = rearrange_plan(
            importance.head_batches, importance.neuron_batches, plan.remove_heads, plan.keep_neurons
        )
        plan.facts.update(costs)
    pruned = prune_model(parent.model, plan.remove_heads, plan.keep_neurons)
    tuning_log = [] if config.no_tuning else _tune(config, parent.model, pruned, train)
    distill_log = (
        distill(config, parent.model, parent.tokenizer, pruned, train, output_dir) if config.distill_steps else []
    )
    save_model(pruned, parent.tokenizer, output_dir)
    (output_dir / PARTIAL).unlink(missing_ok=True)
    prune_s = time.perf_counter() - wall_start
    record = RunRecord(
        "prune",
        _record_config(config, parent, source, len(rows), train, threads, cache),
        {
            **_plan_metrics(plan, pruned, parent.model, window),
            **(_latency_metrics(table, pruned, table_hit) if table is not None else {}),
            "importance_cache_hit": importance_hit,
            "mask_tuning": tuning_log,
            "distill_losses": distill_log,
            "prune_s": prune_s,
            "wall_s": prune_s,
        },
    )
    record.write(output_dir)  # the pruned model is complete (and knows its parent) before it is scored
    if scored is not None:
        record.metrics.update(_evaluate(config, task, output_dir, scored, threads, cache))
        record.metrics["wall_s"] = time.perf_counter() - wall_start
        record.write(output_dir)
    print_result_table(f"bertbench prune {config.task}", record.flat(), list(TABLE_KEYS))
    info(f"saved the pruned model to {output_dir} ({record.metrics['flops_fraction']:.3f} of the FLOPs per window)")
    return record


def _check_inputs(config: PruneConfig, source: ModelSource) -> None:
    """What can be told without loading anything: the model is not pruned yet, the budget fits it, the files are
    there and the training file is not the scored one."""
    if source.config.is_pruned:
        raise BertbenchError(
            f"model {config.model}: already pruned (config.json has bertbench_pruning); prune its parent with a "
            "smaller --flops instead"
        )
    try:  # the budget is checked before any costly work and before the output directory is made
        check_budget(config.flops if config.flops is not None else config.latency)
    except BudgetError as exc:
        raise BertbenchError(f"model {config.model}: {exc}") from None
    if not Path(config.train).is_file():
        raise BertbenchError(f"{config.train}: file not found")
    if config.eval is not None:
        if not Path(config.eval).is_file():
            raise BertbenchError(f"{config.eval}: file not found")
        check_not_evaluated([config.train], [config.eval], "--train", "--eval")


def _load_scored(config: PruneConfig, task: Task, parent: LoadedModel, cache: Cache) -> EvalData | None:
    """The --eval file's features (the parent's tokenizer is the pruned model's), read before any pass."""
    if config.eval is None:
        return None
    scored = task.load_eval_data(
        config.eval,
        parent.tokenizer,
        config.task_options,
        cache,
        max_examples=config.max_eval_samples,
        labels=head_labels(task, parent.model.config),
    )
    announce_data_problems(scored, config.strict_data)
    return scored


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
            if stale.name in PRUNE_OUTPUTS:
                stale.unlink()
    return directory


def _flops_window(config: PruneConfig, train: TrainData) -> float:
    """The window length FLOPs are priced at: the training windows' mean (what the model will be fed), or
    --max-seq-length under --flops-window max."""
    if config.flops_window == "max" or not len(train.lengths):
        return float(config.task_options.max_seq_length)
    return float(np.mean(train.lengths))


def _sample(data: TrainData, count: int, seed: int) -> np.ndarray:
    """`count` rows drawn without replacement (all when fewer), ordered by length so batches pad little."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(data.num_samples, min(count, data.num_samples), replace=False)
    return rows[np.argsort(np.asarray(data.lengths)[rows], kind="stable")]


def _inputs(data: TrainData, rows: np.ndarray, device: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in data.training_batch(rows, 0).items()}


def _tune(config: PruneConfig, parent: BertHeadModel, pruned: BertHeadModel, train: TrainData) -> list[dict]:
    """Least-squares mask tuning on its own training sample."""
    rows = _sample(train, config.tuning_samples, config.seed + 1)
    size = config.batch_size
    batches = [_inputs(train, rows[i : i + size], config.device) for i in range(0, len(rows), size)]
    steps = 2 * pruned.config.num_hidden_layers
    with progress_bar("mask tuning (least squares)", steps, config.show_progress) as advance:
        return tune_masks(parent, pruned, batches, on_step=advance)


def distill(
    config: PruneConfig,
    teacher: BertHeadModel,
    tokenizer: WordPieceTokenizer,
    student: BertHeadModel,
    train: TrainData,
    output_dir: Path,
) -> list[float]:
    """--distill-steps of the training loop with the teacher's softened outputs as targets: its AdamW parameter
    groups (LayerNorm and biases not decayed) and schedule (no warm-up, linear decay), its divergence check; the
    steps are logged to OUTPUT_DIR/train_log.jsonl. Returns every step's loss."""
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    (output_dir / TRAIN_LOG).unlink(missing_ok=True)  # an interrupted prune's steps are done again, not appended
    training = TrainConfig(
        learning_rate=config.distill_learning_rate,
        max_steps=config.distill_steps,
        batch_size=config.batch_size,
        warmup_steps=0,
        seed=config.seed,
        log_every=1,
    )
    loss = DistillationLoss(teacher, config.distill_temperature, student, config.distill_hidden_weight)
    trainer = Trainer(
        student,
        tokenizer,
        train,
        loss,
        training,
        output_dir,
        DistEnv(device=config.device),
        show_progress=config.show_progress,
        checkpoints=False,
        label="distillation from the unpruned model",
    )
    try:
        trainer.train()
    except TrainingDiverged as exc:
        raise BertbenchError(f"{exc}; nothing saved (try a lower --distill-learning-rate)") from None
    finally:
        loss.close()
    entries = [json.loads(line) for line in trainer.log_path.read_text().splitlines()]
    return [entry["loss"] for entry in entries if "loss" in entry]


def _record_config(
    config: PruneConfig,
    parent: LoadedModel,
    source: ModelSource,
    importance_rows: int,
    train: TrainData,
    threads: int,
    cache: Cache,
) -> dict[str, Any]:
    parent_path = str(Path(source.tokenizer_dir).resolve()) if source.kind != "preset" else source.name
    return {
        "task": config.task,
        **parent.describe(),
        "parent_model_path": parent_path,
        "parent_fingerprint": source.fingerprint,
        "parent_random_weights": source.random_weights,
        "train_data": str(config.train),
        "train_data_sha256": sha256_file(config.train),
        "flops_budget": config.flops,
        "latency_budget": config.latency,
        "latency_backend": config.latency_backend if config.latency is not None else None,
        "latency_precision": config.latency_precision if config.latency is not None else None,
        "latency_batch_size": config.latency_batch_size if config.latency is not None else None,
        "flops_window_kind": config.flops_window,
        "rearrangement": not config.no_rearrangement,
        "importance_samples": importance_rows,
        "tuning_samples": 0 if config.no_tuning else min(config.tuning_samples, train.num_samples),
        "distill_steps": config.distill_steps,
        "distill_learning_rate": config.distill_learning_rate,
        "distill_temperature": config.distill_temperature,
        "distill_hidden_weight": config.distill_hidden_weight,
        "batch_size": config.batch_size,
        "eval_data": str(config.eval) if config.eval else None,
        **config.task_options.as_dict(),
        "device": config.device,
        "threads": threads,
        "seed": config.seed,
        "cache_dir": str(cache.root),
    }


def _plan_metrics(plan: PruningPlan, pruned: BertHeadModel, parent: BertHeadModel, window: float) -> dict[str, Any]:
    ours, theirs = pruned.config.flops_per_window(window), parent.config.flops_per_window(window)
    return {
        **plan.describe(),
        "flops_fraction": ours / theirs,  # counted on the model (under --latency the budget is of time)
        "flops_window": window,
        **{k: v for k, v in plan.facts.items() if k.startswith("rearrangement")},
        "removed_heads": {str(layer): heads for layer, heads in sorted(plan.remove_heads.items())},
        "kept_neurons": [indices.tolist() for indices in plan.keep_neurons],
        "pruned_parameters": sum(p.numel() for p in pruned.parameters()),
        "flops_per_window": ours,
        "parent_flops_per_window": theirs,
    }


def _latency_metrics(table: LatencyTable, pruned: BertHeadModel, hit: bool) -> dict[str, Any]:
    """The plan on the measured table: its predicted time per batch against the parent's."""
    predicted = table.model_ms(*pruned.config.layer_sizes())
    return {
        "predicted_latency_ms": predicted,
        "parent_latency_ms": table.parent_ms,
        "latency_fraction": predicted / table.parent_ms,
        "latency_table": table.as_dict(),
        "latency_table_cache_hit": hit,
    }


def _evaluate(
    config: PruneConfig, task: Task, output_dir: Path, scored: EvalData, threads: int, cache: Cache
) -> dict[str, Any]:
    """The pruned model (as saved) on --eval in FP32 torch, guarded against its parent's FP32 on the same data."""
    announce("scoring the pruned model")
    loaded = load_model(resolve_model(str(output_dir)), task.head, seed=config.seed)
    options = RuntimeOptions()
    _, metrics = evaluate_loaded(
        loaded,
        scored,
        task,
        options,
        Placement(device=config.device, threads=threads),
        task_options=config.task_options,
        show_progress=config.show_progress,
    )
    data_key = f"{sha256_file(config.eval)}:{config.max_eval_samples}"
    guard = accuracy_facts(loaded, scored, task, config.task_options, metrics, options, threads, data_key, 0.99, cache)
    kept = {k: metrics.get(k) for k in (*task.metrics, "eval_samples_per_s") if k in metrics}
    return {**kept, **guard}
