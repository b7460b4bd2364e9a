"""A latency table (`bertbench prune --latency`): what a batch of windows costs on this machine, for one backend and
precision, as a function of each layer's head count and feed-forward width.

A FLOP budget is not a latency budget: a GEMM that shrinks does not speed up in proportion (less so for INT8), and
how much it does differs between CPUs; Kwon et al. also search against measured latency. The table is linear by
parts, which is what the measurements of one-layer models support: a layer's attention costs a fixed part once it
has a head plus a part per head, its feed-forward a fixed part once it has a neuron plus a part per neuron; the
rest (embeddings, the task head, the runtime's own overhead) is the base. The table is measured by bench.layer_latency
(this module times nothing) and cached per CPU model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bertbench.pruning.search import UnitCosts


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per batch: base, and per layer the attention's and feed-forward's fixed and per-unit parts."""

    base_ms: float
    attention_ms: float
    head_ms: float
    ffn_ms: float
    neuron_ms: float
    layers: int
    heads: int
    neurons: int
    facts: dict[str, Any] = field(default_factory=dict)  # backend, precision, window, batch, CPU, the measurements

    def layer_ms(self, heads: int, neurons: int) -> float:
        """One layer's time with `heads` heads and `neurons` neurons."""
        attention = self.attention_ms + heads * self.head_ms if heads else 0.0
        ffn = self.ffn_ms + neurons * self.neuron_ms if neurons else 0.0
        return attention + ffn

    def model_ms(self, heads_per_layer: list[int], neurons_per_layer: list[int]) -> float:
        """The whole model's time per batch."""
        return self.base_ms + sum(self.layer_ms(h, n) for h, n in zip(heads_per_layer, neurons_per_layer, strict=True))

    @property
    def parent_ms(self) -> float:
        """The unpruned model's time per batch."""
        return self.model_ms([self.heads] * self.layers, [self.neurons] * self.layers)

    def costs(self) -> UnitCosts:
        """The search's prices: per head and per neuron; the fixed parts of every layer counted as kept (a layer the
        search empties then saves a little more than planned, never less)."""
        fixed = self.base_ms + self.layers * (self.attention_ms + self.ffn_ms)
        return UnitCosts(self.head_ms, self.neuron_ms, self.parent_ms, fixed)

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON (the cache entry, the record)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyTable:
        """Back from as_dict()."""
        return cls(**data)


def fit_table(
    measured: dict[tuple[int, int], float], layers: int, heads: int, neurons: int, facts: dict[str, Any]
) -> LatencyTable:
    """The table from one-layer models' times per batch, keyed (heads, neurons): (H, N), (H/2, N), (0, N), (H, N/2)
    and (H, 0). Noise can make a slope come out at or below zero; it is floored at 1 % of the layer's time per unit
    so that no unit is ever free, and the fixed parts at zero."""
    half_heads, half_neurons = heads // 2, neurons // 2
    full = measured[(heads, neurons)]
    floor = 0.01 * full
    head_ms = max((full - measured[(half_heads, neurons)]) / (heads - half_heads), floor / heads)
    attention_ms = max(measured[(half_heads, neurons)] - measured[(0, neurons)] - head_ms * half_heads, 0.0)
    neuron_ms = max((full - measured[(heads, half_neurons)]) / (neurons - half_neurons), floor / neurons)
    ffn_ms = max(measured[(heads, half_neurons)] - measured[(heads, 0)] - neuron_ms * half_neurons, 0.0)
    base_ms = max(full - (attention_ms + heads * head_ms) - (ffn_ms + neurons * neuron_ms), 0.0)
    table_facts = {**facts, "measured_ms": {f"{h} heads, {n} neurons": ms for (h, n), ms in sorted(measured.items())}}
    return LatencyTable(base_ms, attention_ms, head_ms, ffn_ms, neuron_ms, layers, heads, neurons, table_facts)


def grid(heads: int, neurons: int) -> list[tuple[int, int]]:
    """The one-layer shapes fit_table needs."""
    return [(heads, neurons), (heads // 2, neurons), (0, neurons), (heads, neurons // 2), (heads, 0)]
