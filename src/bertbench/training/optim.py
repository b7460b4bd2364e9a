"""Optimizers and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: biases and LayerNorm parameters are not decayed (as BERT does)."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(name: str, params: Iterable[dict], lr: float) -> torch.optim.Optimizer:
    """`adamw` (decoupled weight decay, eps 1e-6 as BERT) or `lamb`."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-6)
    if name == "lamb":
        from bertbench.training.lamb import Lamb

        return Lamb(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def warmup_decay_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, power: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate, then polynomial decay to 0 at `total_steps` (power 1 = linear)."""

    def factor(step: int) -> float:
        # Same shape as transformers' linear schedule (0 at step 0), so paired runs follow one curve.
        if step < warmup_steps:
            return step / warmup_steps
        remaining = max(0, total_steps - step) / max(1, total_steps - warmup_steps)
        return remaining**power

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
