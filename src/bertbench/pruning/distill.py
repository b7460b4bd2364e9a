"""A short distillation of the pruned model from its unpruned parent (`--distill-steps N`): the parent's logits,
softened by a temperature, are the targets (Hinton et al. 2015); no labels are needed beyond the inputs.

The student keeps its pruned shape (removed heads stay removed); only the weights it still has move. Batches are
drawn from the training data (never the evaluated file), AdamW with linear decay, dropout as configured.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bertbench.models import BertHeadModel
from bertbench.tasks.base import TrainData


def distillation_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], temperature: float):
    """Mean over outputs of KL(teacher || student) on the last axis, at `temperature`, scaled by its square."""
    losses = [
        F.kl_div(
            F.log_softmax(s / temperature, dim=-1),
            F.log_softmax(t / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        for s, t in zip(student, teacher, strict=True)
    ]
    return torch.stack(losses).mean() * temperature**2


def distill(
    teacher: BertHeadModel,
    student: BertHeadModel,
    data: TrainData,
    steps: int,
    batch_size: int,
    learning_rate: float,
    temperature: float,
    seed: int,
    on_step: Callable[[float], None] | None = None,
) -> list[float]:
    """Train `student` in place for `steps` batches towards `teacher`'s outputs; returns the loss of every step."""
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student.train()
    for parameter in student.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    rng = np.random.default_rng(seed)
    order: list[int] = []
    losses = []
    for _ in range(steps):
        if len(order) < batch_size:
            order.extend(rng.permutation(data.num_samples).tolist())
        rows, order = np.array(order[:batch_size]), order[batch_size:]
        batch = {k: torch.from_numpy(v) for k, v in data.training_batch(rows, 0).items()}
        inputs = [batch[name] for name in student.input_names if name in batch]
        with torch.no_grad():
            targets = teacher(*inputs)
        loss = distillation_loss(student(*inputs), targets, temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(losses[-1])
    student.eval()
    return losses
