"""Structurally pruned models: removing attention heads and feed-forward neurons, and storing the result so that
transformers still loads it.

transformers 5 dropped head pruning (no `pruned_heads`, no `prune_heads`), so a checkpoint with fewer query/key/
value rows in some layers no longer loads there; nor does one whose layers differ in feed-forward width. A pruned
model is therefore stored at its parent's shapes, with what was removed set to zero and listed in config.json under
`bertbench_pruning`:
- a removed head: its query, key and value rows and biases, and the matching columns of the attention output
  projection. A zero head adds exactly nothing (its values are zero whatever it attends to); a layer whose heads are
  all removed adds its output bias only.
- a removed feed-forward neuron: its row and bias in the expansion and its column in the contraction. It adds
  exactly nothing either, since every supported activation maps 0 to 0.
transformers computes the same function from the file; bertbench drops those slices on load and runs the smaller
model on every backend. (Models pruned by bertbench < 0.5 removed the same neurons from every layer for real and
recorded `parent_intermediate_size`: they still load as they are.)
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from bertbench.models.bert import BertHeadModel, new_linear
from bertbench.models.config import PRUNING_KEY, BertConfig

_ATTENTION = "bert.encoder.layer.{}.attention.self.{}.{}"
_ATTENTION_OUT = "bert.encoder.layer.{}.attention.output.dense.weight"
_EXPAND = "bert.encoder.layer.{}.intermediate.dense.{}"
_CONTRACT = "bert.encoder.layer.{}.output.dense.weight"


def _kept_dims(config: BertConfig, layer: int) -> torch.Tensor:
    """Indices (in the unpruned projection) of the dimensions of the heads layer `layer` keeps."""
    dropped = set(config.pruned_heads.get(layer, ()))
    d = config.head_dim
    return torch.tensor(
        [h * d + j for h in range(config.num_attention_heads) if h not in dropped for j in range(d)], dtype=torch.long
    )


def _kept_neurons(config: BertConfig, layer: int) -> torch.Tensor:
    """Indices (in the stored feed-forward) of the neurons layer `layer` keeps."""
    dropped = set(config.pruned_neurons.get(layer, ()))
    return torch.tensor([n for n in range(config.intermediate_size) if n not in dropped], dtype=torch.long)


def _slices(config: BertConfig) -> list[tuple[str, int, torch.Tensor, int]]:
    """(state key, axis, kept indices along it, stored length) for every tensor that pruning shrinks."""
    out = []
    for layer in config.pruned_heads:
        keep = _kept_dims(config, layer)
        out += [
            (_ATTENTION.format(layer, part, kind), 0, keep, config.hidden_size)
            for part in ("query", "key", "value")
            for kind in ("weight", "bias")
        ]
        out.append((_ATTENTION_OUT.format(layer), 1, keep, config.hidden_size))
    for layer in config.pruned_neurons:
        keep = _kept_neurons(config, layer)
        out += [(_EXPAND.format(layer, kind), 0, keep, config.intermediate_size) for kind in ("weight", "bias")]
        out.append((_CONTRACT.format(layer), 1, keep, config.intermediate_size))
    return out


def compact_state(state: dict[str, torch.Tensor], config: BertConfig, where: str) -> dict[str, torch.Tensor]:
    """A stored (zero-padded) state -> the shapes of the pruned model. Refuses a removed head or neuron whose weights
    are not zero: the file was changed (trained?) after pruning, and dropping it would change what it computes."""
    out = dict(state)
    for key, axis, keep, stored in _slices(config):
        if key not in out or out[key].shape[axis] != stored:
            continue  # missing or already compact: apply_weights reports shape problems
        drop = torch.ones(stored, dtype=torch.bool)
        drop[keep] = False
        if drop.any() and out[key].index_select(axis, drop.nonzero()[:, 0]).abs().max() > 0:
            raise ValueError(
                f"{where}: {key} is not zero for the heads or neurons that config.json's {PRUNING_KEY} removes "
                "(was the model trained after pruning?)"
            )
        out[key] = out[key].index_select(axis, keep)
    return out


def padded_state(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """The pruned model's state with removed heads and neurons put back as zeros (the stored form, see above)."""
    out = dict(state)
    for key, axis, keep, stored in _slices(config):
        shape = list(out[key].shape)
        shape[axis] = stored
        full = out[key].new_zeros(shape)
        full.index_copy_(axis, keep, out[key])
        out[key] = full
    return out


def _select(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` keeping rows (dim 0: outputs) or columns (dim 1: inputs) `index`."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias.detach().clone() if linear.bias is not None else None
    if dim == 0 and bias is not None:
        bias = bias[index].clone()
    out = new_linear(weight.shape[1], weight.shape[0])
    if bias is None:
        out.bias = None
    with torch.no_grad():
        out.weight.copy_(weight)
        if bias is not None:
            out.bias.copy_(bias)
    return out


def prune_model(
    model: BertHeadModel, remove_heads: dict[int, list[int]], keep_neurons: list[torch.Tensor]
) -> BertHeadModel:
    """A new model without the heads in `remove_heads` (layer -> heads, counted in the unpruned numbering) and
    keeping, in layer i, the feed-forward neurons `keep_neurons[i]` (counted in the layer's current numbering; layers
    may keep different numbers, none included). `model` may itself be pruned; what was removed stays removed."""
    config = model.config
    if len(keep_neurons) != config.num_hidden_layers:
        raise ValueError("keep_neurons needs one index tensor per layer")
    merged = {
        layer: sorted(set(config.pruned_heads.get(layer, ())) | set(remove_heads.get(layer, ())))
        for layer in range(config.num_hidden_layers)
    }
    # The stored numbering of each layer's neurons now, to name the removed ones in the stored file.
    current_neurons = [_kept_neurons(config, layer) for layer in range(config.num_hidden_layers)]
    if config.parent_intermediate_size is not None:  # an old-format model: its neurons are really gone
        raise ValueError("a model pruned by bertbench < 0.5 cannot be pruned again; prune its parent")
    removed_neurons = {}
    for layer, kept in enumerate(keep_neurons):
        keep = set(current_neurons[layer][kept.to(torch.long)].tolist())
        removed = [n for n in range(config.intermediate_size) if n not in keep]
        if removed:
            removed_neurons[layer] = removed
    new_config = replace(
        config,
        pruned_heads={layer: heads for layer, heads in merged.items() if heads},
        pruned_neurons=removed_neurons,
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
        neurons = keep_neurons[index].to(torch.long).sort().values
        layer.intermediate.dense = _select(layer.intermediate.dense, neurons, 0)
        layer.output.dense = _select(layer.output.dense, neurons, 1)
    return pruned
