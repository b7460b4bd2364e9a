"""The null runtime: answers every batch at once with zeros of the right shapes. Timing it measures the harness
alone (batching, padding, queues, LoadGen), which is the ceiling no model can beat on this machine."""

from __future__ import annotations

from typing import Any

import numpy as np

from bertbench.models import (
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    LoadedModel,
)
from bertbench.runtimes.options import Placement, RuntimeOptions


class NullRuntime:
    """No model computation at all."""

    name = "null"

    def __init__(self) -> None:
        self.options = RuntimeOptions(backend="null")
        self.output_names: tuple[str, ...] = ()
        self.num_labels = 2
        self.per_token = False
        self.masked_lm = False
        self.token_labels = 0

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
        """Remember the head's output names and shapes; nothing else to do."""
        self.options = options
        self.output_names = loaded.model.output_names
        self.per_token = isinstance(loaded.model, BertForQuestionAnswering)
        self.masked_lm = isinstance(loaded.model, BertForMaskedLM)
        self.token_labels = (
            loaded.model.config.num_labels if isinstance(loaded.model, BertForTokenClassification) else 0
        )
        if isinstance(loaded.model, BertForSequenceClassification | BertForTokenClassification):
            self.num_labels = loaded.model.config.num_labels

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Zeros: (batch, seq) per token for QA; (batch, labels) for classification; (batch, P, 1) for MLM."""
        batch, seq = inputs["input_ids"].shape
        if self.per_token:
            return {name: np.zeros((batch, seq), dtype=np.float32) for name in self.output_names}
        if self.token_labels:
            return {name: np.zeros((batch, seq, self.token_labels), dtype=np.float32) for name in self.output_names}
        if self.masked_lm:  # one score per masked position (MLM's features always carry them)
            predictions = inputs["masked_positions"].shape[1]
            return {name: np.zeros((batch, predictions, 1), dtype=np.float32) for name in self.output_names}
        return {name: np.zeros((batch, self.num_labels), dtype=np.float32) for name in self.output_names}

    def describe(self) -> dict[str, Any]:
        """Backend facts for metrics.json."""
        return {"backend": self.name, "precision": self.options.precision, "device": "none", "emulated": False}
