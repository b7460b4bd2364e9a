"""The Runtime seam that every backend (PyTorch, ONNX Runtime, …) implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from bertbench.models import LoadedModel
    from bertbench.runtimes.options import Placement, RuntimeOptions


class Runtime(Protocol):
    """prepare() once (load, convert, compile), then infer() many times on prebuilt numpy batches."""

    name: str

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
        """Make the model ready to run as `options` ask, where `placement` says (everything slow happens here)."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: int64 arrays `input_ids`, `attention_mask`, `token_type_ids` -> named outputs."""

    def describe(self) -> dict[str, Any]:
        """Facts about the prepared runtime for metrics.json (device, precision, emulation, …)."""
