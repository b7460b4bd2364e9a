"""`bertbench finetune`: train a task head (and the encoder) on a task's training file, evaluating each epoch."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import save

from bertbench.cache import Cache
from bertbench.io_utils import atomic_write_bytes
from bertbench.jobs.common import check_output_dir, check_training_precision, configure_threads, evaluate_sharded
from bertbench.models import BertHeadModel, LoadedModel, load_model, resolve_model, save_model
from bertbench.results.console import info, print_result_table, warn
from bertbench.results.record import build_record, write_metrics
from bertbench.runtimes import RuntimeOptions
from bertbench.tasks.options import TaskOptions
from bertbench.tasks.registry import TASKS
from bertbench.training.distributed import DistEnv, init_distributed, shutdown_distributed
from bertbench.training.loop import TrainConfig, Trainer

INITIAL_HEAD = "initial_head.safetensors"


@dataclass
class FinetuneConfig:
    """Everything `bertbench finetune` takes."""

    task: str
    model: str
    train: Path
    output_dir: Path
    eval: Path | None = None
    train_config: TrainConfig = field(default_factory=TrainConfig)
    task_options: TaskOptions = field(default_factory=TaskOptions)
    threads: int | None = None
    cache_dir: Path | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_batch_size: int = 64
    device: str = "cpu"
    resume: bool = False
    overwrite: bool = False
    allow_pickle: bool = False
    dist_timeout_s: float = 120.0
    dropout: float | None = None
    show_progress: bool = True


def _save_initial_head(loaded: LoadedModel, output_dir: Path) -> None:
    """Store a freshly initialised head so a paired reference run can start from the very same weights."""
    state = {
        k: v.detach().contiguous()
        for k, v in loaded.model.state_dict().items()
        if k.startswith(tuple(loaded.fresh_parameters))
    }
    atomic_write_bytes(output_dir / INITIAL_HEAD, save(state, metadata={"format": "pt"}))


def run_finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, evaluate after each epoch, save the model in Hugging Face format; returns the record."""
    task = TASKS[config.task]
    dist = init_distributed(config.device, config.dist_timeout_s)
    try:
        return _run(config, task, dist)
    finally:
        shutdown_distributed()


def _run(config: FinetuneConfig, task: Any, dist: DistEnv) -> dict[str, Any]:
    wall_start = time.perf_counter()
    check_training_precision(config.train_config.amp, config.device)
    output_dir = check_output_dir(config.output_dir, dist, config.overwrite, config.resume)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle)
    loaded = load_model(source, task.HEAD, seed=config.train_config.seed)
    if config.dropout is not None:
        loaded.model.set_dropout(config.dropout)
    if dist.is_main and source.random_weights:
        warn(f"model {config.model} starts from random weights (a size preset): expect low accuracy")
    if dist.is_main and loaded.fresh_head:
        info(f"{', '.join(loaded.fresh_parameters)}: freshly initialised (seed {config.train_config.seed})")
        _save_initial_head(loaded, output_dir)

    def load() -> tuple[Any, Any]:
        options = config.task_options
        train = task.load_dataset(
            config.train, loaded.tokenizer, options, cache, training=True, max_examples=config.max_train_samples
        )
        if config.eval is None:
            return train, None
        return train, task.load_dataset(
            config.eval, loaded.tokenizer, options, cache, max_examples=config.max_eval_samples
        )

    train_ds, eval_ds = dist.main_first(load)

    runtime_options = RuntimeOptions(precision="fp32", device=dist.device, threads=threads)

    def evaluate(progress: dict[str, Any], model: BertHeadModel) -> dict[str, Any]:
        if eval_ds is None:
            return {}
        predictions, metrics = evaluate_sharded(
            model,
            loaded.tokenizer,
            source,
            eval_ds,
            config.task,
            dist,
            runtime_options,
            config.task_options,
            config.eval_batch_size,
        )
        if not dist.is_main:
            return {}
        epoch, step = progress["epoch"], progress["step"]
        epoch_dir = output_dir / "eval" / f"epoch-{epoch}"
        epoch_dir.mkdir(parents=True, exist_ok=True)
        task.write_predictions(predictions, epoch_dir, eval_ds)
        run_config = {
            "command": "eval",
            "task": config.task,
            "model": str(output_dir),
            "epoch": epoch,
            "step": step,
            "backend": "torch",
            "precision": "fp32",
            **eval_ds.describe(),
        }
        write_metrics(
            epoch_dir, build_record(run_config, {**metrics, "threads": threads, "world_size": dist.world_size})
        )
        headline = {k: metrics[k] for k in ("exact_match", "f1", "accuracy", "mlm_accuracy") if k in metrics}
        info(f"epoch {epoch} (step {step}): " + ", ".join(f"{k} {v:.4f}" for k, v in headline.items()))
        return {**headline, "eval_samples_per_s": metrics["eval_samples_per_s"]}

    trainer = Trainer(
        loaded.model,
        loaded.tokenizer,
        train_ds,
        task.loss,
        config.train_config,
        output_dir,
        dist,
        on_evaluate=evaluate,
        show_progress=config.show_progress,
    )
    result = trainer.train(resume=config.resume)
    record: dict[str, Any] = {}
    if dist.is_main:
        save_model(loaded.model, loaded.tokenizer, output_dir)
        final_eval = result.eval_history[-1] if result.eval_history else {}
        record = build_record(
            {
                "command": "finetune",
                "task": config.task,
                **loaded.describe(),
                "train_data": str(config.train),
                "eval_data": str(config.eval) if config.eval else None,
                "num_train_examples": train_ds.describe()["num_examples"],
                "num_train_samples": train_ds.num_samples,
                **{f"train_{k}": v for k, v in asdict(config.train_config).items()},
                **config.task_options.as_dict(),
                "dropout": config.dropout,
                "world_size": dist.world_size,
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
                "wall_s": time.perf_counter() - wall_start,
                "eval_history": result.eval_history,
                **{k: v for k, v in final_eval.items() if k not in ("epoch", "step")},
            },
        )
        write_metrics(output_dir, record)
        print_result_table(
            f"bertbench finetune {config.task}",
            record,
            [
                "model",
                "num_train_samples",
                "steps",
                "final_loss",
                "train_samples_per_s",
                "exact_match",
                "f1",
                "accuracy",
                "eval_samples_per_s",
                "wall_s",
            ],
        )
        info(f"saved model to {output_dir}")
    dist.barrier()
    return record
