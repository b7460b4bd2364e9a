"""BERT configuration, encoder and heads, checkpoint loading and saving. Nothing about data or devices."""

from bertbench.models.bert import (
    INPUT_NAMES,
    BertForMaskedLM,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertHeadModel,
)
from bertbench.models.config import PRESETS, BertConfig
from bertbench.models.loading import (
    LoadedModel,
    ModelSource,
    check_window_fits,
    load_model,
    resolve_model,
    save_model,
)
from bertbench.models.tokenizer import WordPieceTokenizer

__all__ = [
    "INPUT_NAMES",
    "PRESETS",
    "BertConfig",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertHeadModel",
    "LoadedModel",
    "ModelSource",
    "WordPieceTokenizer",
    "check_window_fits",
    "load_model",
    "resolve_model",
    "save_model",
]
