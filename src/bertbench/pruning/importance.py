"""Head and neuron importance: the diagonal of the Fisher information of multiplicative masks (Kwon et al. 2022).

Every head's context and every feed-forward activation is multiplied by a mask of ones; the importance of a mask
is the sum over samples of its squared loss gradient, which estimates how much the loss grows when it is zeroed.
The masks are per sample (a (batch, heads) tensor, not one vector), so one backward pass yields exact per-sample
gradients: the sum of their squares, not the square of their sum. Each batch's summed gradient is kept as well: the
mask rearrangement (pruning.rearrange) estimates a layer's block of the Fisher matrix from them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from bertbench.models import BertHeadModel
from bertbench.tasks.base import Task, TrainData


@dataclass
class Importance:
    """Summed squared mask gradients: heads (layers, heads) and neurons (layers, intermediate_size); and each
    batch's summed gradients, head_batches (batches, layers, heads) and neuron_batches (batches, layers, neurons)."""

    heads: torch.Tensor
    neurons: torch.Tensor
    samples: int = 0
    head_batches: torch.Tensor | None = None
    neuron_batches: torch.Tensor | None = None

    def add_batch(self, head_grads: torch.Tensor, neuron_grads: torch.Tensor) -> None:
        """Append one batch's summed gradients ((layers, heads), (layers, neurons))."""
        heads, neurons = head_grads[None].float().cpu(), neuron_grads[None].float().cpu()
        if self.head_batches is None or self.neuron_batches is None:
            self.head_batches, self.neuron_batches = heads, neurons
        else:
            self.head_batches = torch.cat([self.head_batches, heads])
            self.neuron_batches = torch.cat([self.neuron_batches, neurons])


@contextlib.contextmanager
def mask_hooks(
    model: BertHeadModel, head_masks: list[torch.Tensor], neuron_masks: list[torch.Tensor]
) -> Iterator[None]:
    """Multiply layer i's head contexts by head_masks[i] (batch, heads) and its feed-forward activations by
    neuron_masks[i] (batch, neurons) while inside the block."""
    handles = []
    for index, layer in enumerate(model.bert.encoder.layer):
        heads, width = layer.attention.self.num_heads, layer.attention.self.head_dim

        def on_context(module, inputs, out, index=index, heads=heads, width=width):
            batch, seq, _ = out.shape
            masked = out.view(batch, seq, heads, width) * head_masks[index][:, None, :, None]
            return masked.reshape(batch, seq, heads * width)

        def on_activation(module, inputs, out, index=index):
            return out * neuron_masks[index][:, None, :]

        handles.append(layer.attention.self.register_forward_hook(on_context))
        handles.append(layer.intermediate.register_forward_hook(on_activation))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def fisher_importance(
    model: BertHeadModel,
    task: Task,
    data: TrainData,
    rows: np.ndarray,
    batch_size: int,
    start: Importance | None = None,
    on_batch: Callable[[Importance, int], None] | None = None,
) -> Importance:
    """Accumulate importance over `rows` of `data` (in order), continuing from `start` (rows already done are
    `start.samples`); `on_batch(importance, rows_done)` after each batch (progress, partial saves)."""
    config = model.config
    layers = model.bert.encoder.layer
    total = start or Importance(
        torch.zeros(config.num_hidden_layers, config.num_attention_heads, dtype=torch.float64),
        torch.zeros(config.num_hidden_layers, config.intermediate_size, dtype=torch.float64),
    )
    model.eval()
    device = next(model.parameters()).device  # the sums stay on the CPU, the passes run where the model is
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # only the masks' gradients are needed: no weight-gradient GEMMs
    for first in range(total.samples, len(rows), batch_size):
        chosen = rows[first : first + batch_size]
        batch = {k: torch.from_numpy(v).to(device) for k, v in data.training_batch(chosen, 0).items()}
        n = len(chosen)
        heads = [torch.ones(n, layer.attention.self.num_heads, device=device, requires_grad=True) for layer in layers]
        neurons = [torch.ones(n, config.intermediate_size, device=device, requires_grad=True) for _ in layers]
        with mask_hooks(model, heads, neurons):
            outputs = model(*(batch[name] for name in model.input_names if name in batch))
            task.loss(outputs, batch).sum().backward()
        with torch.no_grad():
            total.heads += torch.stack([m.grad.double().pow(2).sum(0).cpu() for m in heads])
            total.neurons += torch.stack([m.grad.double().pow(2).sum(0).cpu() for m in neurons])
            total.add_batch(torch.stack([m.grad.sum(0) for m in heads]), torch.stack([m.grad.sum(0) for m in neurons]))
        total.samples = first + n
        if on_batch is not None:
            on_batch(total, total.samples)
    return total
