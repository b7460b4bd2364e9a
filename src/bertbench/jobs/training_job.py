"""The one skeleton of every training command (`finetune`, `pretrain`): distributed set-up, checks, model, data
(rank 0 fills the cache first), Trainer, save, record, table. A TrainingSpec supplies what differs."""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from safetensors.torch import save

from bertbench.bench.quiet import WatchedRun
from bertbench.cache import Cache
from bertbench.configs import TrainingRun
from bertbench.console import info
from bertbench.errors import BertbenchError
from bertbench.hardware import configure_threads
from bertbench.io_utils import atomic_write_bytes, check_not_evaluated
from bertbench.jobs.common import (
    announce_data_problems,
    announce_model,
    check_output_dir,
    check_training_precision,
)
from bertbench.jobs.sharded_evaluation import evaluate_sharded
from bertbench.models import BertHeadModel, LoadedModel, check_window_fits, load_model, resolve_model, save_model
from bertbench.results.console import print_result_table
from bertbench.results.environment import environment
from bertbench.results.record import RunRecord
from bertbench.runtimes.options import Placement
from bertbench.tasks.base import EvalData, Task, TrainData
from bertbench.tasks.labels import fit_task_labels
from bertbench.training.checkpoint import list_checkpoints
from bertbench.training.config import TrainConfig
from bertbench.training.distributed import DistEnv, init_distributed, shutdown_distributed
from bertbench.training.loop import Trainer, TrainingDiverged, TrainResult

INITIAL_HEAD = "initial_head.safetensors"


class TrainingSpec(Protocol):
    """What one training command adds to the shared skeleton."""

    command: str
    task: Task
    config: TrainingRun
    training: TrainConfig
    eval_every_samples: int | None
    table_keys: tuple[str, ...]

    def prepare_model(self, loaded: LoadedModel) -> None:
        """Adjust the freshly loaded model (e.g. --init-from) before training."""

    def data_files(self) -> tuple[list[Path], list[Path], str, str]:
        """(training files, evaluated files, their flags): no evaluated file may be a training file."""

    def load_data(self, loaded: LoadedModel, cache: Cache) -> tuple[TrainData, EvalData | None]:
        """Training samples and, when asked for, the evaluation set."""

    def on_evaluation(
        self, progress: dict[str, Any], predictions: Any, metrics: dict[str, Any], ctx: TrainingContext
    ) -> dict[str, Any]:
        """What an evaluation adds to the training history (may hold "stop": True); every rank calls it."""

    def evaluates_at_start(self) -> bool:
        """Whether to score the model once before the first step."""

    def on_run_start(self, ctx: TrainingContext, trainer: Trainer) -> None:
        """The timed run begins (everything before it was initialisation); every rank calls it."""

    def on_evaluation_start(self, progress: dict[str, Any], ctx: TrainingContext) -> None:
        """An evaluation during the run is about to begin; every rank calls it."""

    def on_run_end(self, result: TrainResult | None, ctx: TrainingContext) -> None:
        """The run ended (before the model is saved; `result` None: without one); every rank calls it."""

    def record_config(self, ctx: TrainingContext) -> dict[str, Any]:
        """Command-specific config keys of the final record."""

    def record_metrics(self, result: TrainResult, ctx: TrainingContext) -> dict[str, Any]:
        """Command-specific metrics of the final record."""

    def report(self, record: dict[str, Any]) -> None:
        """Final lines on the terminal (rank 0)."""


class TrainingContext:
    """What the skeleton built, for the spec's hooks."""

    def __init__(self, dist: DistEnv, output_dir: Path, loaded: LoadedModel, threads: int, cache: Cache) -> None:
        self.dist, self.output_dir, self.loaded, self.threads, self.cache = dist, output_dir, loaded, threads, cache
        self.train_data: TrainData | None = None
        self.eval_data: EvalData | None = None
        self.initial_metrics: dict[str, Any] = {}
        self.environment = environment()  # the machine, as every record says it


def run_training(spec: TrainingSpec) -> RunRecord | None:
    """Train as `spec` says; returns the record on rank 0 (None on the other ranks)."""
    dist = init_distributed(spec.config.device, spec.config.dist_timeout)
    try:
        return _run(spec, dist)
    finally:
        shutdown_distributed()


def _save_initial_head(loaded: LoadedModel, output_dir: Path) -> None:
    """Store a freshly initialised head so a paired reference run can start from the very same weights."""
    state = {
        k: v.detach().contiguous()
        for k, v in loaded.model.state_dict().items()
        if k.startswith(tuple(loaded.fresh_parameters))
    }
    atomic_write_bytes(output_dir / INITIAL_HEAD, save(state, metadata={"format": "pt"}))


def _eval_cadence(spec: TrainingSpec, dist: DistEnv) -> TrainConfig:
    """--eval-every-samples as optimizer steps of this job's global batch."""
    training = spec.training
    if not spec.eval_every_samples:
        return training
    global_batch = training.batch_size * training.grad_accum * dist.world_size
    return replace(training, eval_every_steps=max(1, math.ceil(spec.eval_every_samples / global_batch)))


def _watched(dist: DistEnv, threads: int, cache: Cache) -> Any:
    """Rank 0 watches the training (quiet check before, other processes' CPU during): its samples/s is a timed
    figure like any other. Every rank's process is ours."""
    pids = dist.gather(os.getpid())
    if not dist.is_main:
        return contextlib.nullcontext()
    return WatchedRun(threads * dist.world_size, cache.root, lambda: pids)


def _run(spec: TrainingSpec, dist: DistEnv) -> RunRecord | None:
    wall_start = time.perf_counter()
    config = spec.config
    check_training_precision(spec.training.amp, config.device)
    owner = spec.command if spec.command == "pretrain" else f"{spec.command} {spec.task.name}"
    check_not_evaluated(*spec.data_files())  # before anything is made or loaded
    output_dir = check_output_dir(config.output_dir, dist, config.overwrite, config.resume, owner)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle, cache_dir=config.cache_dir)
    check_window_fits(source, getattr(config, "task_options", None))
    source = fit_task_labels(spec.task, source, spec.data_files()[0])  # a fresh head gets the training file's labels
    loaded = load_model(source, spec.task.head, seed=spec.training.seed)
    spec.prepare_model(loaded)
    if config.dropout is not None:
        loaded.model.set_dropout(config.dropout)
    if dist.is_main:
        announce_model(loaded, config.model, spec.training.seed, use="trained from scratch")
    if dist.is_main and loaded.fresh_head:
        _save_initial_head(loaded, output_dir)
    ctx = TrainingContext(dist, output_dir, loaded, threads, cache)
    ctx.train_data, ctx.eval_data = dist.main_first(lambda: spec.load_data(loaded, cache))
    for data in (ctx.train_data, ctx.eval_data):
        if data is not None:
            announce_data_problems(data, config.strict_data, speak=dist.is_main)
    placement = Placement(device=dist.device, threads=threads)
    task_options = config.task_options

    def evaluate(progress: dict[str, Any], model: BertHeadModel) -> dict[str, Any]:
        if ctx.eval_data is None:
            return {}
        spec.on_evaluation_start(progress, ctx)
        predictions, metrics = evaluate_sharded(
            model,
            loaded.tokenizer,
            source,
            ctx.eval_data,
            spec.task,
            dist,
            placement,
            task_options,
            config.eval_batch_size,
        )
        return spec.on_evaluation(progress, predictions, metrics, ctx)

    if ctx.eval_data is not None and not config.resume and spec.evaluates_at_start():
        ctx.initial_metrics = evaluate({"epoch": 0, "step": 0, "samples_seen": 0, "wall_s": 0.0}, loaded.model.eval())
    training = _eval_cadence(spec, dist)
    trainer = Trainer(
        loaded.model,
        loaded.tokenizer,
        ctx.train_data,
        spec.task.loss,
        training,
        output_dir,
        dist,
        on_evaluate=evaluate,
        show_progress=config.show_progress,
        owner=owner,
    )
    spec.on_run_start(ctx, trainer)
    try:
        with _watched(dist, threads, cache) as watch:
            result = trainer.train(resume=config.resume)
    except BaseException as exc:
        spec.on_run_end(None, ctx)  # the run ended without a result (diverged, interrupted, failed)
        if not isinstance(exc, TrainingDiverged):
            raise
        kept = list_checkpoints(output_dir)
        last_good = f"the last good checkpoint is {kept[-1]}" if kept else "no checkpoint was written before it"
        raise BertbenchError(f"{exc}; no final model saved, {last_good} (try a lower --learning-rate)") from None
    spec.on_run_end(result, ctx)
    record: RunRecord | None = None
    if dist.is_main:
        save_model(loaded.model, loaded.tokenizer, output_dir)
        record = RunRecord(
            spec.command,
            {
                "task": spec.task.name,
                **loaded.describe(),
                **spec.record_config(ctx),
                **{f"train_{k}": v for k, v in asdict(training).items()},
                "dropout": config.dropout,
                **dist.describe(),  # world size, nodes, processes per node (and gloo's interface across nodes)
                "threads": threads,
                "cache_dir": str(cache.root),
            },
            {
                "steps": result.global_step,
                "total_steps": result.total_steps,
                "samples_seen": result.samples_seen,
                "train_s": result.train_s,
                "train_samples_per_s": result.samples_per_s,
                "final_loss": result.final_loss,
                "resumed_from_step": result.resumed_from_step,
                "training_wall_s": result.wall_s,
                **(watch.facts() if isinstance(watch, WatchedRun) else {}),
                "wall_s": time.perf_counter() - wall_start,
                "eval_history": result.eval_history,
                **spec.record_metrics(result, ctx),
            },
        )
        record.write(output_dir)
        flat = record.flat()
        print_result_table(f"bertbench {spec.command}", flat, list(spec.table_keys))
        spec.report(flat)
        info(f"saved model to {output_dir}")
    dist.barrier()
    return record
