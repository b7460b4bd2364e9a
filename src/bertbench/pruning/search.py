"""The mask search: which heads and how many feed-forward neurons to keep under a FLOP budget.

Heads may differ in number between layers (at least one kept per layer); the feed-forward width is the same in
every layer (so that the saved config's `intermediate_size` describes the model and transformers loads it), a
multiple of NEURON_MULTIPLE (GEMM-friendly). For every count of kept heads, the most important heads are kept
(each layer's best first), the remaining budget buys the widest feed-forward that fits, each layer keeping its most
important neurons; the count whose kept importance is largest wins (Kwon et al.'s search, with the width uniform).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bertbench.models import BertConfig

NEURON_MULTIPLE = 8


class BudgetError(ValueError):
    """The budget cannot be met (or keeps everything)."""


@dataclass
class PruningPlan:
    """What to remove: heads per layer (unpruned numbering) and the neurons each layer keeps."""

    remove_heads: dict[int, list[int]]
    keep_neurons: list[torch.Tensor]
    flops_fraction: float  # of the unpruned encoder's FLOPs per window
    kept_importance: float  # of the total importance
    facts: dict[str, object] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        """Plain facts for the record."""
        return {
            "kept_heads": self.facts.get("kept_heads"),
            "neurons_per_layer": len(self.keep_neurons[0]),
            "heads_per_layer": self.facts.get("heads_per_layer"),
            "flops_fraction": self.flops_fraction,
            "kept_importance_fraction": self.kept_importance,
        }


def _head_order(heads: torch.Tensor) -> list[tuple[int, int]]:
    """(layer, head) in keeping order: every layer's most important head first, then all others by importance."""
    best = {layer: int(heads[layer].argmax()) for layer in range(heads.shape[0])}
    first = sorted(best.items(), key=lambda item: -float(heads[item]))
    rest = [(layer, head) for layer in range(heads.shape[0]) for head in range(heads.shape[1]) if best[layer] != head]
    rest.sort(key=lambda item: -float(heads[item]))
    return first + rest


def _costs(config: BertConfig, seq_len: int) -> tuple[float, float, float]:
    """(FLOPs of one head, of one more neuron in every layer, of the whole encoder) per window of `seq_len`."""
    h, d, layers = config.hidden_size, config.head_dim, config.num_hidden_layers
    head = seq_len * 8 * h * d + 4 * d * seq_len * seq_len
    return head, seq_len * 4 * h * layers, config.flops_per_window(seq_len)


def check_budget(config: BertConfig, budget: float, seq_len: int) -> None:
    """BudgetError when `budget` is not in (0, 1) or below the smallest model `config` prunes to (one head a layer
    and NEURON_MULTIPLE neurons): a check that needs no importance, made before any costly work."""
    if not 0 < budget < 1:
        raise BudgetError(f"--flops {budget}: a budget is a fraction of the model's FLOPs in (0, 1)")
    head_cost, neuron_cost, full = _costs(config, seq_len)
    smallest = (config.num_hidden_layers * head_cost + NEURON_MULTIPLE * neuron_cost) / full
    if budget < smallest:
        raise BudgetError(
            f"--flops {budget}: below the smallest model this one prunes to (one head a layer and "
            f"{NEURON_MULTIPLE} neurons: {smallest:.3f} of its FLOPs)"
        )


def search_masks(
    heads: torch.Tensor, neurons: torch.Tensor, config: BertConfig, budget: float, seq_len: int
) -> PruningPlan:
    """The plan that keeps the most importance within `budget` (a fraction of the encoder's FLOPs per window of
    `seq_len` tokens); BudgetError when the budget is not in (0, 1) or below the smallest prunable model."""
    check_budget(config, budget, seq_len)
    layers, per_layer = heads.shape
    width = config.intermediate_size
    head_cost, neuron_cost, full = _costs(config, seq_len)
    allowed = budget * full
    order = _head_order(heads)
    head_gain = torch.cumsum(torch.tensor([float(heads[item]) for item in order]), 0)
    ranked = neurons.sort(dim=1, descending=True)
    neuron_gain = torch.cumsum(ranked.values.double(), 1).sum(0)  # [n-1]: kept importance with n per layer
    total = float(heads.sum() + neurons.sum()) or 1.0
    best = (-1.0, layers, NEURON_MULTIPLE)  # check_budget guarantees this smallest plan fits
    for kept in range(layers, layers * per_layer + 1):
        room = allowed - kept * head_cost
        n = min(width, int(room // neuron_cost) // NEURON_MULTIPLE * NEURON_MULTIPLE)
        if n < NEURON_MULTIPLE:
            continue
        score = float(head_gain[kept - 1] + neuron_gain[n - 1])
        if score > best[0]:
            best = (score, kept, n)
    score, kept, n = best
    keep = set(order[:kept])
    remove = {layer: [head for head in range(per_layer) if (layer, head) not in keep] for layer in range(layers)}
    remove = {layer: removed for layer, removed in remove.items() if removed}
    keep_neurons = [ranked.indices[layer, :n].sort().values for layer in range(layers)]
    used = (kept * head_cost + n * neuron_cost) / full
    return PruningPlan(
        remove,
        keep_neurons,
        used,
        score / total,
        {"kept_heads": kept, "heads_per_layer": [per_layer - len(remove.get(i, [])) for i in range(layers)]},
    )
