"""The Runtime seam that every backend (PyTorch, ONNX Runtime, …) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bertbench.models import LoadedModel

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
QUANTIZATION_MODES = ("dynamic", "static")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass
class RuntimeOptions:
    """What the user asked for; each runtime checks what it can honour and refuses the rest clearly."""

    precision: str = "fp32"
    device: str = "cpu"
    threads: int = 1
    quantization: str = "dynamic"
    calibration_method: str = "minmax"
    # INT8 weights: per-channel scales over the full 8-bit range. Measured on the fine-tuned MiniLM (SQuAD dev,
    # ORT dynamic, AVX2 without VNNI): F1 -0.7 against FP32, where per-tensor 7-bit (reduce_range) lost 8.4.
    per_channel: bool = True
    reduce_range: bool = False
    compile: bool = False  # torch.compile
    providers: tuple[str, ...] = ()  # onnxruntime execution providers; () picks from the device
    cache_dir: Path | None = None
    export_dir: Path | None = None  # also copy the prepared artifact here, for deployment
    # Calibration samples for static INT8 (a BatchSource built from training data, never the evaluated file).
    calibration: Any = None
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)  # encoder layers left in FP32 (e.g. "layer.3")


class Runtime(Protocol):
    """prepare() once (load, convert, compile), then infer() many times on prebuilt numpy batches."""

    name: str

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions) -> None:
        """Make the model ready to run with `options` (everything slow happens here, untimed)."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: int64 arrays `input_ids`, `attention_mask`, `token_type_ids` -> named outputs."""

    def describe(self) -> dict[str, Any]:
        """Facts about the prepared runtime for metrics.json (device, precision, emulation, …)."""
