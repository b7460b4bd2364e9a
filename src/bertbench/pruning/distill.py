"""A short distillation of the pruned model from its unpruned parent (`--distill-steps N`): the parent's logits,
softened by a temperature, are the targets (Hinton et al. 2015), and, with `--distill-hidden-weight`, every layer's
hidden states as well (layer i of the student matches layer i of the teacher: pruning keeps the layer count and
the hidden width). No labels are needed beyond the inputs.

Padded positions carry no information and differ between batchings, so they are left out of both terms: a
distribution over the sequence (SQuAD's start and end) gets them at probability 0 on both sides, a distribution per
token (NER) and the hidden states count real tokens only.

This module holds the loss only: the steps are the training loop's (training.Trainer: its parameter groups, with
LayerNorm and biases exempt from weight decay, its schedule, its divergence check), composed by the prune job. The
student keeps its pruned shape (removed heads stay removed); only the weights it still has move.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from bertbench.models import BertHeadModel


def per_sample_distillation_loss(
    student: tuple[torch.Tensor, ...],
    teacher: tuple[torch.Tensor, ...],
    temperature: float,
    real: torch.Tensor | None = None,
    sequence_outputs: tuple[bool, ...] = (),
) -> torch.Tensor:
    """KL(teacher || student) on the last axis at `temperature`, summed over each sample's positions, averaged over
    the outputs and scaled by the temperature's square: one value per sample. `real` (batch, seq) marks real tokens;
    `sequence_outputs[k]` says output k has the sequence on axis 1, whose padded positions are then left out. A
    one-value output (a regression score, whose softmax is always 1) is matched by squared error instead."""
    losses = []
    for k, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.shape[-1] == 1 and s.dim() == 2:
            losses.append((s.float() - t.float()).pow(2).sum(1) / temperature**2)
            continue
        per_token = real is not None and k < len(sequence_outputs) and sequence_outputs[k]
        if per_token and s.dim() == 2:  # a distribution over positions: padded ones get probability 0 on both sides
            s, t = (x.float().masked_fill(~real, torch.finfo(torch.float32).min) for x in (s, t))
        kl = F.kl_div(
            F.log_softmax(s / temperature, dim=-1),
            F.log_softmax(t / temperature, dim=-1),
            log_target=True,
            reduction="none",
        )
        if per_token and kl.dim() == 3:  # a distribution per token: padded tokens do not count
            kl = kl * real[..., None]
        losses.append(torch.nan_to_num(kl).reshape(len(kl), -1).sum(1))
    return torch.stack(losses).mean(0) * temperature**2


def distillation_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], temperature: float):
    """The batch mean of per_sample_distillation_loss over every position (KL with reduction `batchmean`)."""
    return per_sample_distillation_loss(student, teacher, temperature).mean()


def per_sample_hidden_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], real: torch.Tensor
) -> torch.Tensor:
    """Squared error between the layers' hidden states, averaged over hidden units and real tokens, summed over
    layers: one value per sample."""
    weights = real.float() / real.float().sum(1, keepdim=True).clamp(min=1)
    total = torch.zeros(len(real), device=real.device)
    for s, t in zip(student, teacher, strict=True):
        total = total + ((s.float() - t.float()).pow(2).mean(-1) * weights).sum(1)
    return total


@contextlib.contextmanager
def layer_outputs(model: BertHeadModel, into: list[torch.Tensor]) -> Iterator[None]:
    """Append every encoder layer's output to `into` while inside the block."""
    handles = [
        layer.register_forward_hook(lambda module, args, out: into.append(out)) for layer in model.bert.encoder.layer
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class DistillationLoss:
    """The training loop's loss of a student: its distance to the frozen teacher's outputs on the same batch, and
    with `hidden_weight` > 0 that many times the distance between their layers' hidden states."""

    def __init__(
        self,
        teacher: BertHeadModel,
        temperature: float,
        student: BertHeadModel | None = None,
        hidden_weight: float = 0.0,
    ) -> None:
        self.teacher, self.temperature, self.hidden_weight = teacher.eval(), temperature, hidden_weight
        self.sequence_outputs = tuple(name in teacher.sequence_outputs for name in teacher.output_names)
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self._student_hidden: list[torch.Tensor] = []
        self._reading = contextlib.ExitStack()  # the student's layers are read until close()
        if hidden_weight > 0:
            if student is None:
                raise ValueError("hidden-state distillation needs the student, to read its layers")
            self._reading.enter_context(layer_outputs(student, self._student_hidden))

    def close(self) -> None:
        """Stop reading the student's layers."""
        self._reading.close()

    def __call__(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample loss of the student's `outputs` on `batch` (the student's forward pass just ran)."""
        teacher_hidden: list[torch.Tensor] = []
        with torch.no_grad(), layer_outputs(self.teacher, teacher_hidden):
            targets = self.teacher(**{name: batch[name] for name in self.teacher.input_names if name in batch})
        real = batch["attention_mask"].bool()
        loss = per_sample_distillation_loss(outputs, targets, self.temperature, real, self.sequence_outputs)
        if self.hidden_weight > 0:
            student_hidden = self._student_hidden[-len(teacher_hidden) :]
            self._student_hidden.clear()  # the next forward pass appends its own
            loss = loss + self.hidden_weight * per_sample_hidden_loss(student_hidden, teacher_hidden, real)
        return loss
