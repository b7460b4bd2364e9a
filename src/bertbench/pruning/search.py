"""The mask search: which heads and which feed-forward neurons to keep under a FLOP budget (Kwon et al. 2022).

Every head costs the same and so does every neuron, whatever its layer, so for a given number of kept heads the
best heads are the most important ones over all layers, and the remaining budget buys the most important neurons
over all layers; the head count whose kept importance is largest wins. Layers therefore keep different numbers of
heads and neurons, none included (a layer without heads adds its attention output bias only). Each layer's neuron
count is then rounded down to a multiple of `multiple` (GEMM-friendly widths; 1 searches the paper's exact space).

Costs are the encoder's FLOPs per window at a window length the caller chooses: the training data's mean window
length by default, since attention scores grow with the square of the length and pricing heads at the longest
window would remove too many of them for the windows actually fed.
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
    budget_fraction: float  # of the unpruned model's cost in the budget's unit (FLOPs per window, or table latency)
    kept_importance: float  # of the total importance
    facts: dict[str, object] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        """Plain facts for the record."""
        return {
            "kept_heads": self.facts.get("kept_heads"),
            "neurons_per_layer": [len(kept) for kept in self.keep_neurons],
            "heads_per_layer": self.facts.get("heads_per_layer"),
            "kept_importance_fraction": self.kept_importance,
        }


@dataclass(frozen=True)
class UnitCosts:
    """What the budget is counted in: the cost of one head and of one neuron (the same in every layer), of the
    unpruned model, and the part no pruning removes (FLOPs: none; latency: embeddings, heads, per-layer fixed)."""

    head: float
    neuron: float
    full: float
    fixed: float = 0.0


def unit_costs(config: BertConfig, window: float) -> tuple[float, float, float]:
    """(FLOPs of one head, of one neuron, of the whole encoder) per window of `window` tokens."""
    h, d = config.hidden_size, config.head_dim
    head = window * 8 * h * d + 4 * d * window * window
    return head, window * 4 * h, config.flops_per_window(window)


def check_budget(budget: float) -> None:
    """BudgetError when `budget` is not in (0, 1): a check that needs no importance, made before any costly work.
    (Any budget above 0 can be met: the smallest model keeps no head and no neuron.)"""
    if not 0 < budget < 1:
        raise BudgetError(f"--flops {budget}: a budget is a fraction of the model's FLOPs in (0, 1)")


def search_masks(
    heads: torch.Tensor,
    neurons: torch.Tensor,
    config: BertConfig,
    budget: float,
    window: float,
    multiple: int = NEURON_MULTIPLE,
) -> PruningPlan:
    """The plan that keeps the most importance within `budget` (a fraction of the encoder's FLOPs per window of
    `window` tokens); BudgetError when the budget is not in (0, 1)."""
    check_budget(budget)
    return search_within(heads, neurons, UnitCosts(*unit_costs(config, window)), budget, multiple)


def search_within(
    heads: torch.Tensor, neurons: torch.Tensor, costs: UnitCosts, budget: float, multiple: int = NEURON_MULTIPLE
) -> PruningPlan:
    """The plan that keeps the most importance within `budget` x costs.full, heads and neurons priced by `costs`;
    BudgetError when not even the fixed part fits."""
    layers, per_layer = heads.shape
    head_cost, neuron_cost, full = costs.head, costs.neuron, costs.full
    allowed = budget * full - costs.fixed
    if allowed < 0:
        raise BudgetError(
            f"a budget of {budget} is below what pruning cannot remove ({costs.fixed / full:.3f} of the whole)"
        )
    head_order = heads.flatten().argsort(descending=True, stable=True)
    head_gain = torch.cat([torch.zeros(1, dtype=torch.float64), heads.flatten()[head_order].double().cumsum(0)])
    neuron_order = neurons.flatten().argsort(descending=True, stable=True)
    neuron_gain = torch.cat([torch.zeros(1, dtype=torch.float64), neurons.flatten()[neuron_order].double().cumsum(0)])
    best = (-1.0, 0, 0)
    for kept in range(layers * per_layer + 1):
        room = allowed - kept * head_cost
        if room < 0:
            break
        count = min(neurons.numel(), int(room // neuron_cost))
        score = float(head_gain[kept] + neuron_gain[count])
        if score > best[0]:
            best = (score, kept, count)
    _, kept, count = best
    kept_heads = {(int(i) // per_layer, int(i) % per_layer) for i in head_order[:kept]}
    remove = {
        layer: removed
        for layer in range(layers)
        if (removed := [h for h in range(per_layer) if (layer, h) not in kept_heads])
    }
    chosen = torch.zeros(neurons.numel(), dtype=torch.bool)
    chosen[neuron_order[:count]] = True
    keep_neurons = [_round_down(row, neurons[layer], multiple) for layer, row in enumerate(chosen.view(layers, -1))]
    heads_per_layer = [per_layer - len(remove.get(layer, [])) for layer in range(layers)]
    used = (costs.fixed + kept * head_cost + sum(len(k) for k in keep_neurons) * neuron_cost) / full
    total = float(heads.sum() + neurons.sum()) or 1.0
    score = float(heads.sum() - sum(heads[layer, removed].sum() for layer, removed in remove.items())) + sum(
        float(neurons[layer, keep].sum()) for layer, keep in enumerate(keep_neurons)
    )
    return PruningPlan(
        remove, keep_neurons, used, score / total, {"kept_heads": kept, "heads_per_layer": heads_per_layer}
    )


def _round_down(chosen: torch.Tensor, importance: torch.Tensor, multiple: int) -> torch.Tensor:
    """The layer's most important chosen neurons, as many as the largest multiple of `multiple` allows (sorted)."""
    count = int(chosen.sum()) // multiple * multiple
    return importance.argsort(descending=True, stable=True)[:count].sort().values
