"""`bertbench pretrain`: masked-LM pretraining with evaluation every N samples and a target accuracy.

Time to train is measured as MLPerf measures it: from the start of training to the evaluation that first reaches
the target, evaluations included (model building and data preparation excluded). A run that ends without reaching
its target records `target_reached: false` and no time to train.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.jobs.common import check_output_dir, check_training_precision, configure_threads, evaluate_sharded
from bertbench.models import BertForMaskedLM, BertForPreTraining, BertHeadModel, load_model, resolve_model, save_model
from bertbench.models.loading import init_weights_from
from bertbench.results.console import info, print_result_table, warn
from bertbench.results.record import build_record, write_metrics
from bertbench.runtimes import RuntimeOptions
from bertbench.tasks.mlm import task as mlm
from bertbench.tasks.mlm.masking import MaskingParams
from bertbench.tasks.options import TaskOptions
from bertbench.training.distributed import DistEnv, init_distributed, shutdown_distributed
from bertbench.training.loop import TrainConfig, Trainer


@dataclass
class PretrainConfig:
    """Everything `bertbench pretrain` takes."""

    model: str
    corpus: list[Path]
    output_dir: Path
    eval_corpus: list[Path] = field(default_factory=list)
    train_config: TrainConfig = field(default_factory=lambda: TrainConfig(optimizer="lamb", learning_rate=1e-3))
    max_seq_length: int = 128
    masking: MaskingParams = field(default_factory=MaskingParams)
    nsp: bool = False
    init_from: str | None = None
    eval_every_samples: int | None = None
    eval_samples: int = 10000
    eval_batch_size: int = 64
    target_mlm_accuracy: float | None = None
    threads: int | None = None
    cache_dir: Path | None = None
    device: str = "cpu"
    resume: bool = False
    overwrite: bool = False
    allow_pickle: bool = False
    dist_timeout_s: float = 120.0
    dropout: float | None = None
    show_progress: bool = True


def run_pretrain(config: PretrainConfig) -> dict[str, Any]:
    """Pretrain, evaluate every N samples, stop at the target; saves the model and metrics.json."""
    dist = init_distributed(config.device, config.dist_timeout_s)
    try:
        return _run(config, dist)
    finally:
        shutdown_distributed()


def _run(config: PretrainConfig, dist: DistEnv) -> dict[str, Any]:
    wall_start = time.perf_counter()
    check_training_precision(config.train_config.amp, config.device)
    if not config.eval_corpus and config.target_mlm_accuracy is not None:
        raise BertbenchError("--target-mlm-accuracy needs --eval-corpus (held-out documents to measure it on)")
    output_dir = check_output_dir(config.output_dir, dist, config.overwrite, config.resume)
    threads = configure_threads(config.threads)
    cache = Cache(config.cache_dir)
    source = resolve_model(config.model, allow_pickle=config.allow_pickle)
    head = BertForPreTraining if config.nsp else BertForMaskedLM
    loaded = load_model(source, head, seed=config.train_config.seed)
    if config.init_from:
        loaded.fresh_parameters = init_weights_from(loaded.model, config.init_from, config.allow_pickle)
    if config.dropout is not None:
        loaded.model.set_dropout(config.dropout)
    if loaded.fresh_head and dist.is_main:
        info(f"{', '.join(loaded.fresh_parameters)}: freshly initialised (seed {config.train_config.seed})")
    tokenizer = loaded.tokenizer
    options = TaskOptions(
        max_seq_length=config.max_seq_length,
        mask_prob=config.masking.mask_prob,
        max_predictions_per_seq=config.masking.max_predictions,
        whole_word_masking=config.masking.whole_word,
    )

    def load() -> tuple[Any, Any]:
        sequences, _ = mlm.load_sequences(
            config.corpus, tokenizer, config.max_seq_length, config.nsp, config.train_config.seed, cache
        )
        if not config.eval_corpus:
            return sequences, None
        return sequences, mlm.load_eval_set(
            config.eval_corpus, tokenizer, config.max_seq_length, config.masking, cache, config.eval_samples
        )

    sequences, eval_set = dist.main_first(load)
    train = mlm.MlmTrainSource(
        sequences,
        config.masking,
        mlm.special_ids(tokenizer),
        mlm.continuation_table(tokenizer),
        config.train_config.seed,
        config.nsp,
    )
    runtime_options = RuntimeOptions(precision="fp32", device=dist.device, threads=threads)
    target = config.target_mlm_accuracy

    def evaluate(progress: dict[str, Any], model: BertHeadModel) -> dict[str, Any]:
        if eval_set is None:
            return {}
        # The MLM head alone is scored; with NSP the same weights sit under BertForPreTraining.
        _, metrics = evaluate_sharded(
            model, tokenizer, source, eval_set, "mlm", dist, runtime_options, options, config.eval_batch_size
        )
        accuracy = dist.gather(metrics.get("mlm_accuracy"))[0]
        if dist.is_main:
            info(f"step {progress['step']} ({progress['samples_seen']} samples): mlm_accuracy {accuracy:.4f}")
        out = {"mlm_accuracy": accuracy, "wall_s": progress.get("wall_s", 0.0)}
        if target is not None and accuracy >= target:
            out["stop"] = True
        return out

    train_config = config.train_config
    if config.eval_every_samples:
        global_batch = train_config.batch_size * train_config.grad_accum * dist.world_size
        train_config = TrainConfig(
            **{**asdict(train_config), "eval_every_steps": max(1, math.ceil(config.eval_every_samples / global_batch))}
        )
    initial = None
    if eval_set is not None and not config.resume:
        initial = evaluate({"step": 0, "samples_seen": 0, "wall_s": 0.0}, loaded.model.eval())["mlm_accuracy"]
    trainer = Trainer(
        loaded.model,
        tokenizer,
        train,
        mlm.loss,
        train_config,
        output_dir,
        dist,
        on_evaluate=evaluate,
        show_progress=config.show_progress,
    )
    result = trainer.train(resume=config.resume)

    record: dict[str, Any] = {}
    if dist.is_main:
        save_model(loaded.model, tokenizer, output_dir)
        curve = [e for e in result.eval_history if "mlm_accuracy" in e]
        reached = next((e for e in curve if target is not None and e["mlm_accuracy"] >= target), None)
        record = build_record(
            {
                "command": "pretrain",
                "task": "mlm",
                **loaded.describe(),
                "init_from": config.init_from,
                "corpus": [str(p) for p in config.corpus],
                "eval_corpus": [str(p) for p in config.eval_corpus],
                "num_train_sequences": train.num_samples,
                "num_eval_sequences": eval_set.num_samples if eval_set is not None else 0,
                "max_seq_length": config.max_seq_length,
                **{f"masking_{k}": v for k, v in asdict(config.masking).items()},
                "nsp": config.nsp,
                **{f"train_{k}": v for k, v in asdict(train_config).items()},
                "eval_every_samples": config.eval_every_samples,
                "dropout": config.dropout,
                "world_size": dist.world_size,
                "threads": threads,
                "cache_dir": str(cache.root),
            },
            {
                "target_mlm_accuracy": target,
                "target_reached": reached is not None if target is not None else None,
                "time_to_train_s": reached["wall_s"] if reached else None,
                "samples_to_target": reached["samples_seen"] if reached else None,
                "initial_mlm_accuracy": initial,
                "mlm_accuracy": curve[-1]["mlm_accuracy"] if curve else None,
                "best_mlm_accuracy": max((e["mlm_accuracy"] for e in curve), default=None),
                "steps": result.global_step,
                "total_steps": result.total_steps,
                "samples_seen": result.samples_seen,
                "train_s": result.train_s,
                "train_samples_per_s": result.samples_per_s,
                "final_loss": result.final_loss,
                "resumed_from_step": result.resumed_from_step,
                "training_wall_s": result.wall_s,
                "wall_s": time.perf_counter() - wall_start,
                "eval_history": result.eval_history,
            },
        )
        write_metrics(output_dir, record)
        print_result_table(
            "bertbench pretrain",
            record,
            [
                "model",
                "num_train_sequences",
                "steps",
                "samples_seen",
                "final_loss",
                "train_samples_per_s",
                "initial_mlm_accuracy",
                "mlm_accuracy",
                "best_mlm_accuracy",
                "target_mlm_accuracy",
                "target_reached",
                "time_to_train_s",
                "wall_s",
            ],
        )
        if target is not None and reached is None:
            warn(f"target mlm_accuracy {target} NOT reached (best {record['best_mlm_accuracy']})")
        elif reached is not None:
            info(
                f"target mlm_accuracy {target} reached after {reached['samples_seen']} samples, "
                f"{reached['wall_s']:.1f} s"
            )
        info(f"saved model to {output_dir}")
    dist.barrier()
    return record
