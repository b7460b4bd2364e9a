"""What the user asks of a runtime (backend, precision, INT8 settings, …): the CLI reads its options from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.choices import (
    BACKEND_ALIASES,
    BACKENDS,
    CALIBRATION_METHODS,
    INT8_WEIGHT_TYPES,
    PRECISIONS,
    PROVIDERS,
    QUANTIZATION_MODES,
)
from bertbench.cliargs import option


@dataclass(kw_only=True)
class RuntimeOptions:
    """Each runtime checks what it can honour and refuses the rest clearly. Fields without a flag are set by the
    job (threads, device and cache come from the command's common options; calibration samples from data)."""

    backend: str = option("torch", help="inference runtime", choices=BACKENDS, normalise=BACKEND_ALIASES)
    precision: str = option(
        "fp32", help="fp32, bf16 (emulated on CPUs without it, and said so), fp16 (CUDA), int8", choices=PRECISIONS
    )
    quantization: str = option(
        "dynamic", help="INT8 mode (static: QDQ on onnxruntime, NNCF on openvino)", choices=QUANTIZATION_MODES
    )
    calibration_method: str = option("minmax", help="static INT8 range calibration", choices=CALIBRATION_METHODS)
    # INT8 weights: per-channel scales over the full 8-bit range. Measured on the fine-tuned MiniLM (SQuAD dev,
    # ORT dynamic, AVX2 without VNNI): F1 -0.7 against FP32, where per-tensor 7-bit (reduce_range) lost 8.4.
    per_channel: bool = option(True, help="per-channel INT8 weight scales")
    reduce_range: bool = option(
        False, help="7-bit INT8 weights (ORT's advice without VNNI; cost 8 F1 on MiniLM SQuAD here)"
    )
    int8_weights: str = option("s8", help="INT8 weight type (onnxruntime; u8 only there)", choices=INT8_WEIGHT_TYPES)
    # Default by mode, from the INT8 study (fine-tuned MiniLM, SQuAD dev): dynamic QAttention is faster than FP32
    # attention (56 vs 52 samples/s) and more accurate; static QDQ score MatMuls cost 0.8 F1 and gain nothing.
    quantize_attention: bool | None = option(
        None, help="INT8 attention (onnxruntime; default: on when dynamic (QAttention), off when static)"
    )

    def int8_attention(self) -> bool:
        """Whether attention runs in INT8: the flag, or the measured best for the quantization mode."""
        return self.quantization == "dynamic" if self.quantize_attention is None else self.quantize_attention

    compile: bool = option(False, help="torch.compile the model (torch backend)")
    providers: tuple[str, ...] = option(
        (),
        help="onnxruntime execution provider (repeatable; default from --device)",
        choices=PROVIDERS,
        flag="--provider",
        repeat=True,
    )
    export_dir: Path | None = option(None, help="also write the prepared ONNX/OpenVINO artifact here")
    device: str = "cpu"
    threads: int = 1
    cache_dir: Path | None = None
    # Calibration samples for static INT8 (a BatchSource built from training data, never the evaluated file).
    calibration: Any = None
    keep_fp32: tuple[str, ...] = field(default_factory=tuple)  # encoder layers left in FP32 (e.g. "layer.3")
