"""BERT architecture configuration, read from and written to Hugging Face `config.json` files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Size presets (Turc et al. 2019 for tiny..medium; Devlin et al. 2018 for base and large).
PRESETS: dict[str, dict[str, int]] = {
    "bert-tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2},
    "bert-mini": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4},
    "bert-small": {"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8},
    "bert-medium": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16},
}

PRUNING_KEY = "bertbench_pruning"
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# Sanity bounds (far beyond any published BERT) so that a hostile config.json cannot ask for terabytes.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 1_000_000),
    "hidden_size": (1, 16_384),
    "num_hidden_layers": (1, 256),
    "num_attention_heads": (1, 1_024),
    "intermediate_size": (1, 65_536),
    "max_position_embeddings": (1, 65_536),
    "type_vocab_size": (1, 1_024),
    "num_labels": (1, 10_000),
}


@dataclass
class BertConfig:
    """Shapes and hyper-parameters of a BERT encoder; field names follow transformers' BertConfig."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    num_labels: int = 2
    # Structured pruning (`bertbench prune`): heads and feed-forward neurons removed per layer (both stored as zeros
    # at their place, so intermediate_size stays the parent's), and the feed-forward width before pruning of models
    # pruned by bertbench < 0.5, which removed the same neurons from every layer for real. Stored in config.json
    # under PRUNING_KEY (see models/pruning.py for why not transformers' pruned_heads).
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)
    pruned_neurons: dict[int, list[int]] = field(default_factory=dict)
    parent_intermediate_size: int | None = None
    # Keys we do not model but must write back so that transformers reads the file the same way.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def heads_in_layer(self, layer: int) -> int:
        """Attention heads that layer `layer` computes (all of them unless pruned)."""
        return self.num_attention_heads - len(self.pruned_heads.get(layer, ()))

    def attention_width(self, layer: int) -> int:
        """Width of layer `layer`'s query, key and value projections (its heads x head_dim)."""
        return self.heads_in_layer(layer) * self.head_dim

    def neurons_in_layer(self, layer: int) -> int:
        """Feed-forward neurons that layer `layer` computes (all of them unless pruned)."""
        return self.intermediate_size - len(self.pruned_neurons.get(layer, ()))

    def layer_sizes(self) -> tuple[list[int], list[int]]:
        """Heads and feed-forward neurons each layer computes."""
        layers = range(self.num_hidden_layers)
        return [self.heads_in_layer(i) for i in layers], [self.neurons_in_layer(i) for i in layers]

    @property
    def is_pruned(self) -> bool:
        """Whether heads or feed-forward neurons were removed from the model this config came from."""
        return bool(self.pruned_heads or self.pruned_neurons) or self.parent_intermediate_size is not None

    def unpruned(self) -> BertConfig:
        """The configuration of the model this one was pruned from (itself when not pruned)."""
        intermediate = self.parent_intermediate_size or self.intermediate_size
        return replace(
            self, pruned_heads={}, pruned_neurons={}, parent_intermediate_size=None, intermediate_size=intermediate
        )

    @classmethod
    def preset(cls, name: str, vocab_size: int = 30522) -> BertConfig:
        """The configuration of a size preset (`bert-tiny` … `bert-large`)."""
        shape = PRESETS[name]
        return cls(vocab_size=vocab_size, intermediate_size=4 * shape["hidden_size"], **shape)

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any]) -> BertConfig:
        """Build from the dict of a Hugging Face `config.json` (unknown keys are kept in `extra`)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        pruning_fields = ("pruned_heads", "pruned_neurons", "parent_intermediate_size")
        kwargs = {k: v for k, v in data.items() if k in known and k not in pruning_fields}
        extra = {k: v for k, v in data.items() if k not in known and k != PRUNING_KEY}
        if data.get("pruned_heads"):
            raise ValueError(
                "pruned_heads (transformers 4 head pruning, weights stored without those heads) is not supported; "
                f"bertbench stores pruned models under {PRUNING_KEY}"
            )
        pruning = data.get(PRUNING_KEY) or {}
        if not isinstance(pruning, dict):
            raise ValueError(f"{PRUNING_KEY} is not an object")
        kwargs["pruned_heads"] = _layer_lists(pruning.get("pruned_heads") or {}, "pruned_heads", "head")
        kwargs["pruned_neurons"] = _layer_lists(pruning.get("pruned_neurons") or {}, "pruned_neurons", "neuron")
        kwargs["parent_intermediate_size"] = pruning.get("parent_intermediate_size")
        if "id2label" in data and "num_labels" not in data:
            kwargs["num_labels"] = len(data["id2label"])
        return cls(**kwargs, extra=extra)

    def to_hf_dict(self, architecture: str) -> dict[str, Any]:
        """The dict for a Hugging Face `config.json` that transformers' BertConfig loads."""
        skipped = ("extra", "num_labels", "pruned_heads", "pruned_neurons", "parent_intermediate_size")
        data = {k: v for k, v in asdict(self).items() if k not in skipped}
        data.update({k: v for k, v in self.extra.items() if k not in ("architectures", "_name_or_path")})
        data["model_type"] = "bert"
        data["architectures"] = [architecture]
        data["position_embedding_type"] = "absolute"
        labels = self.extra.get("id2label") or {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
        data["id2label"] = labels
        data["label2id"] = {v: int(k) for k, v in labels.items()}
        if self.is_pruned:
            data[PRUNING_KEY] = {
                "pruned_heads": {str(layer): sorted(heads) for layer, heads in sorted(self.pruned_heads.items())},
                "pruned_neurons": {str(layer): sorted(n) for layer, n in sorted(self.pruned_neurons.items())},
            }
            if self.parent_intermediate_size is not None:  # the old format: neurons removed for real
                data[PRUNING_KEY]["parent_intermediate_size"] = self.parent_intermediate_size
        return data

    def validate(self, source: str) -> None:
        """Raise ValueError naming `source` when the configuration cannot describe a BERT we can run."""
        for name, (low, high) in SIZE_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{source}: {name} {value!r} is not an integer in [{low}, {high}]")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"{source}: {name} {value!r} is not a number in [0, 1)")
        pad = self.pad_token_id
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            raise ValueError(f"{source}: pad_token_id {self.pad_token_id!r} is not a token id")
        if not isinstance(self.hidden_act, str):
            raise ValueError(f"{source}: hidden_act {self.hidden_act!r} is not a name")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"{source}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ValueError(f"{source}: unsupported hidden_act {self.hidden_act!r}")
        self._validate_pruning(source)
        kind = self.extra.get("position_embedding_type", "absolute")
        if kind != "absolute":
            raise ValueError(f"{source}: position_embedding_type {kind!r} is not supported (only 'absolute')")

    def _validate_pruning(self, source: str) -> None:
        # A layer may lose every head (its attention adds only the output bias) or every neuron (likewise).
        for name, lists, count in (
            ("pruned_heads", self.pruned_heads, self.num_attention_heads),
            ("pruned_neurons", self.pruned_neurons, self.intermediate_size),
        ):
            for layer, removed in lists.items():
                if not 0 <= layer < self.num_hidden_layers:
                    raise ValueError(f"{source}: {PRUNING_KEY} {name} names layer {layer}, which the model lacks")
                outside = [k for k in removed if not 0 <= k < count]
                if outside:
                    raise ValueError(
                        f"{source}: {PRUNING_KEY} {name} layer {layer} lists {outside[0]}, outside 0..{count - 1}"
                    )
                if len(set(removed)) != len(removed):
                    raise ValueError(f"{source}: {PRUNING_KEY} {name} layer {layer} lists an index twice")
        if self.pruned_neurons and self.parent_intermediate_size is not None:
            raise ValueError(f"{source}: {PRUNING_KEY} has both pruned_neurons and parent_intermediate_size")
        parent = self.parent_intermediate_size
        if parent is not None and (
            isinstance(parent, bool) or not isinstance(parent, int) or parent < self.intermediate_size
        ):
            raise ValueError(f"{source}: {PRUNING_KEY} parent_intermediate_size {parent!r} is below intermediate_size")

    def parameter_count(self, include_embeddings: bool = True) -> int:
        """Parameters of the encoder (embeddings, layers, pooler), excluding task heads."""
        h = self.hidden_size
        layers = sum(
            4 * h * a + 3 * a + h + 2 * 2 * h + (h * i + i) + (i * h + h)
            for a, i in ((self.attention_width(k), self.neurons_in_layer(k)) for k in range(self.num_hidden_layers))
        )
        emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        return layers + h * h + h + (emb if include_embeddings else 0)

    def forward_flops(self, tokens: int, tokens_x_len: int) -> float:
        """Encoder forward FLOPs (2 per multiply-add, matmuls only) for `tokens` token positions fed, padding
        included, where `tokens_x_len` = sum over sequences of (padded length)^2.

        Per layer: QKV and output projections 8ha and feed-forward 4hi per token; attention scores and the
        weighted sum 4a per (query, key) pair, where a = h unless heads were pruned (then kept heads x head_dim).
        Embedding look-ups, LayerNorm, softmax and heads are ignored.
        """
        h = self.hidden_size
        total = 0.0
        for layer in range(self.num_hidden_layers):
            a, i = self.attention_width(layer), self.neurons_in_layer(layer)  # h and intermediate_size unless pruned
            total += tokens * (8 * h * a + 4 * h * i) + 4 * a * tokens_x_len
        return total

    def flops_per_window(self, seq_len: int) -> float:
        """Encoder forward FLOPs of one window of `seq_len` tokens (how pruning budgets are counted)."""
        return self.forward_flops(seq_len, seq_len * seq_len)


def _layer_lists(raw: Any, name: str, what: str) -> dict[int, list[int]]:
    """{"3": [0, 5]} as JSON stores it -> {3: [0, 5]}; ValueError when it is not that shape."""
    if not isinstance(raw, dict):
        raise ValueError(f"{PRUNING_KEY} {name} is not an object of layer -> {what} indices")
    out: dict[int, list[int]] = {}
    for layer, indices in raw.items():
        if not str(layer).isdigit() or not isinstance(indices, list) or not all(type(k) is int for k in indices):
            raise ValueError(f"{PRUNING_KEY} {name}[{layer!r}] is not a list of {what} indices")
        if indices:
            out[int(layer)] = sorted(indices)
    return out
