"""Optimisation settings shared by `finetune` and `pretrain` (the CLI reads its training options from here)."""

from __future__ import annotations

from dataclasses import dataclass

from bertbench.choices import OPTIMIZERS, TRAINING_PRECISIONS
from bertbench.cliargs import (
    batch_size_value,
    fraction,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_value,
)
from bertbench.errors import BertbenchError


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation hyper-parameters (batch_size is per process)."""

    learning_rate: float = option(5e-5, help="peak learning rate", parse=positive_float, aliases=("--lr",))
    epochs: int = option(2, help="passes over the training data", parse=positive_int)
    max_steps: int | None = option(None, help="stop after N optimizer steps", parse=positive_int)
    batch_size: int = option(16, help="samples per process and micro-batch", parse=batch_size_value)
    grad_accum: int = option(1, help="micro-batches per optimizer step", parse=positive_int)
    warmup_ratio: float = option(0.1, help="fraction of steps warming up linearly", parse=fraction)
    warmup_steps: int | None = option(None, help="warm-up steps (overrides --warmup-ratio)", parse=non_negative_int)
    weight_decay: float = option(0.01, help="decoupled weight decay", parse=non_negative_float)
    max_grad_norm: float = option(1.0, help="gradient clipping norm (0: off)", parse=non_negative_float)
    seed: int = option(42, help="seed for fresh heads, data order, masks and dropout", parse=seed_value)
    optimizer: str = option("adamw", help="optimizer", choices=OPTIMIZERS)
    decay_power: float = option(1.0, help="polynomial decay after warm-up (1: linear)", parse=positive_float)
    save_steps: int = option(0, help="also checkpoint every N steps (0: epoch ends only)", parse=non_negative_int)
    keep_checkpoints: int = option(2, help="checkpoints kept", parse=positive_int)
    log_every: int = option(10, help="train_log.jsonl line every N steps", parse=positive_int)
    eval_every_steps: int = 0  # 0: evaluate at epoch ends only (pretrain sets it from --eval-every-samples)
    group_by_length: bool = option(False, help="batch samples of similar length (less padding)")
    amp: str = option(
        "fp32", help="mixed precision (autocast; fp16 needs CUDA)", choices=TRAINING_PRECISIONS, flag="--precision"
    )

    def validate(self) -> None:
        """Reject settings that cannot train (the CLI's parsers already refuse most of them)."""
        if self.learning_rate <= 0 or self.batch_size < 1 or self.grad_accum < 1 or self.epochs < 1:
            raise BertbenchError("training: learning rate, batch size, grad accumulation and epochs must be positive")
        if self.max_steps is not None and self.max_steps < 1:
            raise BertbenchError(f"--max-steps {self.max_steps}: must be at least 1")


@dataclass(kw_only=True)
class PretrainTrainConfig(TrainConfig):
    """Masked-LM pretraining defaults: LAMB at a higher rate, larger batches, one epoch."""

    learning_rate: float = option(1e-3, help="peak learning rate", parse=positive_float, aliases=("--lr",))
    epochs: int = option(1, help="passes over the corpus", parse=positive_int)
    batch_size: int = option(32, help="sequences per process and micro-batch", parse=batch_size_value)
    optimizer: str = option("lamb", help="optimizer", choices=OPTIMIZERS)
