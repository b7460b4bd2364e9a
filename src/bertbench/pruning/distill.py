"""A short distillation of the pruned model from its unpruned parent (`--distill-steps N`): the parent's logits,
softened by a temperature, are the targets (Hinton et al. 2015); no labels are needed beyond the inputs.

This module holds the loss only: the steps are the training loop's (training.Trainer: its parameter groups, with
LayerNorm and biases exempt from weight decay, its schedule, its divergence check), composed by the prune job. The
student keeps its pruned shape (removed heads stay removed); only the weights it still has move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bertbench.models import BertHeadModel


def per_sample_distillation_loss(
    student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], temperature: float
) -> torch.Tensor:
    """KL(teacher || student) on the last axis at `temperature`, summed over each sample's positions, averaged over
    the outputs and scaled by the temperature's square: one value per sample. A one-value output (a regression
    score, whose softmax is always 1) is matched by squared error instead."""
    losses = []
    for s, t in zip(student, teacher, strict=True):
        if s.shape[-1] == 1 and s.dim() == 2:
            losses.append((s.float() - t.float()).pow(2).sum(1) / temperature**2)
            continue
        kl = F.kl_div(
            F.log_softmax(s / temperature, dim=-1),
            F.log_softmax(t / temperature, dim=-1),
            log_target=True,
            reduction="none",
        )
        losses.append(kl.reshape(len(kl), -1).sum(1))
    return torch.stack(losses).mean(0) * temperature**2


def distillation_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], temperature: float):
    """The batch mean of per_sample_distillation_loss (KL with reduction `batchmean`)."""
    return per_sample_distillation_loss(student, teacher, temperature).mean()


class DistillationLoss:
    """The training loop's loss of a student: its distance to the frozen teacher's outputs on the same batch."""

    def __init__(self, teacher: BertHeadModel, temperature: float) -> None:
        self.teacher, self.temperature = teacher.eval(), temperature
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)

    def __call__(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample loss of the student's `outputs` on `batch`."""
        with torch.no_grad():
            targets = self.teacher(**{name: batch[name] for name in self.teacher.input_names if name in batch})
        return per_sample_distillation_loss(outputs, targets, self.temperature)
