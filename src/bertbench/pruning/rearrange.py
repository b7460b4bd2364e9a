"""Mask rearrangement (Kwon et al. 2022, step 2): within each layer, which heads or neurons to keep, the count fixed
by the search, taking their interactions into account.

The search ranks units by the diagonal of the Fisher matrix, as if removing two units cost the sum of removing each.
Within a layer the units interact; with the layer's block of the Fisher matrix estimated from each batch's summed
mask gradient g_b, removing a set R costs about sum_b (sum_{i in R} g_b,i)^2. Finding the best R is hard; the greedy
pass here starts from the diagonal's choice and offers every kept unit, least important first, a place in R: each
offer adds it and then takes back the one member whose return leaves R's cost smallest. R's cost never grows.
"""

from __future__ import annotations

import torch


def removal_cost(gradients: torch.Tensor, removed: torch.Tensor) -> float:
    """The block-Fisher estimate of the loss increase from removing units `removed` (indices): gradients is
    (batches, units)."""
    return float(gradients[:, removed].double().sum(1).pow(2).sum())


def rearrange_layer(gradients: torch.Tensor, keep: int) -> torch.Tensor:
    """The `keep` units of one layer to keep (sorted indices), gradients (batches, units) being each batch's summed
    mask gradient."""
    units = gradients.shape[1]
    grads = gradients.double()
    by_importance = grads.pow(2).sum(0).argsort(stable=True)  # least important first
    if keep in (0, units):
        return by_importance[units - keep :].sort().values
    removed = by_importance[: units - keep].tolist()
    for candidate in by_importance[units - keep :].tolist():
        trial = [*removed, candidate]
        members = grads[:, trial]  # (batches, |R| + 1)
        without = (members.sum(1, keepdim=True) - members).pow(2).sum(0)  # R's cost with each member taken back
        back = int(without.argmin())
        removed = trial[:back] + trial[back + 1 :]
    dropped = set(removed)
    return torch.tensor([unit for unit in range(units) if unit not in dropped], dtype=torch.long)


def rearrange_plan(
    head_batches: torch.Tensor,
    neuron_batches: torch.Tensor,
    remove_heads: dict[int, list[int]],
    keep_neurons: list[torch.Tensor],
) -> tuple[dict[int, list[int]], list[torch.Tensor], dict[str, float]]:
    """The plan's heads and neurons rearranged layer by layer (counts unchanged): (remove_heads, keep_neurons, the
    summed removal cost before and after)."""
    layers, per_layer = head_batches.shape[1:]
    width = neuron_batches.shape[2]
    new_remove: dict[int, list[int]] = {}
    new_keep: list[torch.Tensor] = []
    before = after = 0.0
    for layer in range(layers):
        heads, neurons = head_batches[:, layer], neuron_batches[:, layer]
        removed_heads = torch.tensor(remove_heads.get(layer, []), dtype=torch.long)
        kept_heads = rearrange_layer(heads, per_layer - len(removed_heads))
        heads_out = _complement(kept_heads, per_layer)
        if len(heads_out):
            new_remove[layer] = heads_out.tolist()
        kept_neurons = rearrange_layer(neurons, len(keep_neurons[layer]))
        new_keep.append(kept_neurons)
        before += removal_cost(heads, removed_heads) + removal_cost(neurons, _complement(keep_neurons[layer], width))
        after += removal_cost(heads, heads_out) + removal_cost(neurons, _complement(kept_neurons, width))
    return new_remove, new_keep, {"rearrangement_cost_before": before, "rearrangement_cost_after": after}


def _complement(kept: torch.Tensor, units: int) -> torch.Tensor:
    mask = torch.ones(units, dtype=torch.bool)
    mask[kept.to(torch.long)] = False
    return mask.nonzero()[:, 0]
