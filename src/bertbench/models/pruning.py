"""Structurally pruned models: removing attention heads and feed-forward neurons, and storing the result so that
transformers still loads it.

transformers 5 dropped head pruning (no `pruned_heads`, no `prune_heads`), so a checkpoint with fewer query/key/
value rows in some layers no longer loads there. A pruned model is therefore stored as follows:
- feed-forward neurons are removed for real, the same number in every layer, so `intermediate_size` says it all;
- removed heads keep their place in the file with all-zero weights (query, key and value rows and biases, and the
  matching columns of the attention output projection), listed in config.json under `bertbench_pruning`.
  A zero head adds exactly nothing (its values are zero whatever it attends to), so transformers computes the same
  function from the file; bertbench drops those slices on load and runs the smaller model on every backend.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from bertbench.models.bert import BertHeadModel
from bertbench.models.config import PRUNING_KEY, BertConfig

_ATTENTION = "bert.encoder.layer.{}.attention.self.{}.{}"
_ATTENTION_OUT = "bert.encoder.layer.{}.attention.output.dense.weight"


def _kept_dims(config: BertConfig, layer: int) -> torch.Tensor:
    """Indices (in the unpruned projection) of the dimensions of the heads layer `layer` keeps."""
    dropped = set(config.pruned_heads.get(layer, ()))
    d = config.head_dim
    return torch.tensor(
        [h * d + j for h in range(config.num_attention_heads) if h not in dropped for j in range(d)], dtype=torch.long
    )


def compact_state(state: dict[str, torch.Tensor], config: BertConfig, where: str) -> dict[str, torch.Tensor]:
    """A stored (zero-padded) state -> the shapes of the pruned model. Refuses a removed head whose weights are not
    zero: the file was changed (trained?) after pruning, and dropping the head would change what it computes."""
    if not config.pruned_heads:
        return state
    out = dict(state)
    for layer in config.pruned_heads:
        keep = _kept_dims(config, layer)
        drop = torch.ones(config.hidden_size, dtype=torch.bool)
        drop[keep] = False
        for part in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                key = _ATTENTION.format(layer, part, kind)
                if key not in out or out[key].shape[0] != config.hidden_size:
                    continue  # missing or already compact: apply_weights reports shape problems
                if out[key][drop].abs().max() > 0:
                    raise ValueError(
                        f"{where}: {key} is not zero for the heads that config.json's {PRUNING_KEY} removes "
                        "(was the model trained after pruning?)"
                    )
                out[key] = out[key][keep]
        key = _ATTENTION_OUT.format(layer)
        if key in out and out[key].shape[1] == config.hidden_size:
            out[key] = out[key][:, keep]
    return out


def padded_state(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """The pruned model's state with removed heads put back as zeros (the stored form, see the module's doc)."""
    if not config.pruned_heads:
        return state
    out = dict(state)
    h = config.hidden_size
    for layer in config.pruned_heads:
        keep = _kept_dims(config, layer)
        for part in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                key = _ATTENTION.format(layer, part, kind)
                full = out[key].new_zeros((h, *out[key].shape[1:]))
                full[keep] = out[key]
                out[key] = full
        key = _ATTENTION_OUT.format(layer)
        full = out[key].new_zeros((h, h))
        full[:, keep] = out[key]
        out[key] = full
    return out


def _select(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` keeping rows (dim 0: outputs) or columns (dim 1: inputs) `index`."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias[index].clone()
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def prune_model(
    model: BertHeadModel, remove_heads: dict[int, list[int]], keep_neurons: list[torch.Tensor]
) -> BertHeadModel:
    """A new model without the heads in `remove_heads` (layer -> heads, counted in the unpruned numbering) and
    keeping, in layer i, the feed-forward neurons `keep_neurons[i]` (the same count in every layer). `model` may
    itself be pruned; heads already removed stay removed."""
    config = model.config
    counts = {len(k) for k in keep_neurons}
    if len(keep_neurons) != config.num_hidden_layers or len(counts) != 1:
        raise ValueError("keep_neurons needs one index tensor per layer, all of one length")
    merged = {
        layer: sorted(set(config.pruned_heads.get(layer, ())) | set(remove_heads.get(layer, ())))
        for layer in range(config.num_hidden_layers)
    }
    new_config = replace(
        config,
        pruned_heads={layer: heads for layer, heads in merged.items() if heads},
        intermediate_size=counts.pop(),
        parent_intermediate_size=config.parent_intermediate_size or config.intermediate_size,
    )
    new_config.validate("pruning")
    pruned = copy.deepcopy(model)
    pruned.config = new_config
    pruned.bert.config = new_config
    for index, layer in enumerate(pruned.bert.encoder.layer):
        # Dimensions to keep, in the layer's current (possibly already pruned) numbering.
        current = [h for h in range(config.num_attention_heads) if h not in config.pruned_heads.get(index, ())]
        kept_heads = [pos for pos, h in enumerate(current) if h not in merged[index]]
        d = config.head_dim
        dims = torch.tensor([pos * d + j for pos in kept_heads for j in range(d)], dtype=torch.long)
        attention = layer.attention
        for part in ("query", "key", "value"):
            setattr(attention.self, part, _select(getattr(attention.self, part), dims, 0))
        attention.self.num_heads = len(kept_heads)
        attention.output.dense = _select(attention.output.dense, dims, 1)
        neurons = keep_neurons[index].to(torch.long)
        layer.intermediate.dense = _select(layer.intermediate.dense, neurons, 0)
        layer.output.dense = _select(layer.output.dense, neurons, 1)
    return pruned
