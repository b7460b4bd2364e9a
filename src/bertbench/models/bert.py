"""A compact BERT encoder and its task heads.

Module and parameter names follow Hugging Face checkpoint keys (`bert.encoder.layer.0.attention.self.query…`),
so loading a checkpoint is a checked copy and our saved weights load in transformers. The model knows nothing
of data, devices or timing; heads return a tuple whose names are in `output_names`.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from bertbench.models.config import BertConfig

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
# What every head takes, in forward() order: the names runtimes, exporters and the trainer feed by.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def _activation(name: str) -> nn.Module:
    if name == "gelu":
        return nn.GELU()
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.GELU(approximate="tanh")
    return nn.ReLU()


def new_linear(in_features: int, out_features: int) -> nn.Linear:
    """nn.Linear, quiet when pruning left it empty (torch warns that initialising zero elements does nothing)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        return nn.Linear(in_features, out_features)


def additive_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) 1/0 mask -> (batch, 1, 1, seq) additive bias: 0 where attended, a large negative elsewhere."""
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # A sliced constant (not arange): the pattern ONNX Runtime fuses into EmbedLayerNormalization.
        positions = torch.arange(config.max_position_embeddings)[None, :]
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_ids[:, : input_ids.shape[1]]
        hidden = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)
        )
        return self.dropout(self.LayerNorm(hidden))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; `implementation` picks SDPA or the explicit matmul form."""

    def __init__(self, config: BertConfig, implementation: str = "sdpa", layer: int = 0) -> None:
        super().__init__()
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention implementation {implementation!r}")
        self.num_heads = config.heads_in_layer(layer)  # fewer than configured when heads were pruned
        self.head_dim = config.head_dim
        width = config.attention_width(layer)
        self.query = new_linear(config.hidden_size, width)
        self.key = new_linear(config.hidden_size, width)
        self.value = new_linear(config.hidden_size, width)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.implementation = implementation

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(hidden)), self._heads(self.value(hidden))
        dropout = self.dropout_prob if self.training else 0.0
        if self.implementation == "sdpa":
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask_bias, dropout_p=dropout)
        else:
            # The explicit form is what ONNX Runtime's BERT optimizer recognises as one Attention op.
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            probs = F.dropout(torch.softmax(scores + mask_bias, dim=-1), dropout, self.training)
            context = torch.matmul(probs, v)
        batch, _, seq, _ = context.shape
        return context.transpose(1, 2).reshape(batch, seq, self.num_heads * self.head_dim)


class BertDenseResidual(nn.Module):
    """Dense projection, dropout, then LayerNorm over the residual sum (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, in_features: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = new_linear(in_features, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)

    def bias_only(self, residual: torch.Tensor) -> torch.Tensor:
        """The output when every input unit was pruned: the projection of nothing is its bias."""
        return self.LayerNorm(self.dropout(self.dense.bias) + residual)


class BertAttention(nn.Module):
    """Self-attention followed by its output projection (keys `attention.self.*`, `attention.output.*`)."""

    def __init__(self, config: BertConfig, implementation: str, layer: int = 0) -> None:
        super().__init__()
        self.self = BertSelfAttention(config, implementation, layer)
        self.output = BertDenseResidual(config.attention_width(layer), config)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        if self.self.num_heads == 0:  # every head pruned: nothing to attend with (and no empty GEMM to export)
            return self.output.bias_only(hidden)
        return self.output(self.self(hidden, mask_bias), hidden)


class BertIntermediate(nn.Module):
    """The feed-forward expansion with its activation."""

    def __init__(self, config: BertConfig, layer: int = 0) -> None:
        super().__init__()
        self.dense = new_linear(config.hidden_size, config.neurons_in_layer(layer))  # fewer when pruned
        self.act = _activation(config.hidden_act)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden))


class BertLayer(nn.Module):
    """One transformer block: attention, then feed-forward, each with residual and LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig, implementation: str, layer: int = 0) -> None:
        super().__init__()
        self.attention = BertAttention(config, implementation, layer)
        self.intermediate = BertIntermediate(config, layer)
        self.output = BertDenseResidual(config.neurons_in_layer(layer), config)

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, mask_bias)
        if self.intermediate.dense.out_features == 0:  # every neuron pruned
            return self.output.bias_only(attended)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    """The stack of layers."""

    def __init__(self, config: BertConfig, implementation: str) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config, implementation, i) for i in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, mask_bias)
        return hidden


class BertPooler(nn.Module):
    """tanh(dense(hidden state of [CLS])): the sentence representation the classifier reads."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """The encoder: embeddings, transformer layers and (optionally) the pooler."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, attention: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config, attention)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.embeddings(input_ids, token_type_ids)
        return self.encoder(hidden, additive_attention_mask(attention_mask, hidden.dtype))

    def set_attention_implementation(self, implementation: str) -> None:
        """Switch every layer between `sdpa` and `eager` attention (same weights, same results)."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention implementation {implementation!r}")
        for layer in self.encoder.layer:
            layer.attention.self.implementation = implementation


class BertHeadModel(nn.Module):
    """Base of the task heads: owns `bert`, knows its output names and how to initialise its weights."""

    architecture = ""
    # forward()'s inputs by name: every head takes INPUT_NAMES; a head may take more (masked-LM's positions)
    input_names: tuple[str, ...] = INPUT_NAMES
    output_names: tuple[str, ...] = ()
    sequence_outputs: tuple[str, ...] = ()  # outputs with a value (or a distribution) per token: axis 1 is sequence
    head_prefixes: tuple[str, ...] = ()
    uses_pooler = False

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=self.uses_pooler, attention=attention)

    def init_weights(self, generator: torch.Generator, prefixes: tuple[str, ...] | None = None) -> None:
        """Initialise parameters as BERT does (normal(0, 0.02), zero bias, unit LayerNorm), from `generator`.

        With `prefixes`, only modules whose qualified names start with one of them are touched (a fresh head).
        """
        std = self.config.initializer_range
        selected = [(n, m) for n, m in self.named_modules() if prefixes is None or n.startswith(prefixes)]
        # A tied weight (the MLM decoder) belongs to the embeddings: a fresh head must not overwrite it.
        chosen = {id(m) for _, m in selected}
        outside = {id(p) for m in self.modules() if id(m) not in chosen for p in m.parameters(recurse=False)}
        for _, module in selected:
            if isinstance(module, nn.Linear | nn.Embedding):
                with torch.no_grad():
                    if id(module.weight) not in outside:
                        module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                    if isinstance(module, nn.Linear) and module.bias is not None:
                        module.bias.zero_()
                    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share tied parameters (only the MLM head has some)."""

    def set_dropout(self, probability: float) -> None:
        """Override every dropout rate (hidden and attention), e.g. 0 for exact parity tests."""
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = probability
            elif isinstance(module, BertSelfAttention):
                module.dropout_prob = probability


class BertForQuestionAnswering(BertHeadModel):
    """Extractive QA: a start and an end logit for every token."""

    architecture = "BertForQuestionAnswering"
    output_names = ("start_logits", "end_logits")
    sequence_outputs = ("start_logits", "end_logits")
    head_prefixes = ("qa_outputs",)

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__(config, attention)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(self.bert(input_ids, attention_mask, token_type_ids))
        start, end = logits.unbind(dim=-1)
        return start.contiguous(), end.contiguous()


class BertForSequenceClassification(BertHeadModel):
    """Sentence (pair) classification from the pooled [CLS] representation."""

    architecture = "BertForSequenceClassification"
    output_names = ("logits",)
    head_prefixes = ("classifier", "bert.pooler")
    uses_pooler = True

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__(config, attention)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor]:
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        return (self.classifier(self.dropout(self.bert.pooler(hidden))),)


class BertForTokenClassification(BertHeadModel):
    """Token tagging (named entities): a label distribution for every token, from the encoder's last layer."""

    architecture = "BertForTokenClassification"
    output_names = ("logits",)
    sequence_outputs = ("logits",)
    head_prefixes = ("classifier",)

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__(config, attention)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> tuple[torch.Tensor]:
        return (self.classifier(self.dropout(self.bert(input_ids, attention_mask, token_type_ids))),)


class BertLMPredictionHead(nn.Module):
    """transform (dense, activation, LayerNorm) then a decoder tied to the word embeddings."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.transform_act_fn = _activation(config.hidden_act)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        t = self.transform
        return self.decoder(t.LayerNorm(t.transform_act_fn(t.dense(hidden)))) + self.bias


def _scored_positions(hidden: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
    """(batch, predictions) indices -> only the hidden states that are scored (all of them without indices)."""
    if masked_positions is None:
        return hidden
    index = masked_positions[..., None].expand(-1, -1, hidden.shape[-1])
    return torch.gather(hidden, 1, index)


class BertForMaskedLM(BertHeadModel):
    """Masked-LM head; with `masked_positions` only those positions are decoded (as MLPerf does)."""

    architecture = "BertForMaskedLM"
    input_names = (*INPUT_NAMES, "masked_positions")  # optional: without it every position is decoded
    output_names = ("logits",)
    head_prefixes = ("cls.",)

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__(config, attention)
        self.cls = nn.Module()
        self.cls.predictions = BertLMPredictionHead(config)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        masked_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        return (self.cls.predictions(_scored_positions(hidden, masked_positions)),)


class BertForPreTraining(BertForMaskedLM):
    """Masked LM plus next-sentence prediction (from the pooled [CLS]), as the original BERT pretraining."""

    architecture = "BertForPreTraining"
    output_names = ("logits", "nsp_logits")
    head_prefixes = ("cls.", "bert.pooler")
    uses_pooler = True

    def __init__(self, config: BertConfig, attention: str = "sdpa") -> None:
        super().__init__(config, attention)
        self.cls.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        masked_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.bert(input_ids, attention_mask, token_type_ids)
        nsp = self.cls.seq_relationship(self.bert.pooler(hidden))
        return self.cls.predictions(_scored_positions(hidden, masked_positions)), nsp
