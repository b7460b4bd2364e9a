"""What only the ONNX Runtime backend takes (beside the options every runtime shares, in `options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertbench.choices import CALIBRATION_METHODS, INT8_ACTIVATION_SCALES, INT8_WEIGHT_TYPES, PROVIDERS
from bertbench.cliargs import WRITES, option
from bertbench.runtimes.accepts import CPU_OR_GPU, Accepts, device_kind
from bertbench.tasks.registry import SERVED_TASKS

GPU_PROVIDERS = ("cuda", "tensorrt")
# Dynamic INT8's activation scales when --int8-activations is not given. per-batch (ORT's DynamicQuantizeLinear: one
# scale per tensor) makes a window's answer depend on its batch-mates; per-token does not, but measured on the
# fine-tuned MiniLM (SQuAD dev, batch 32, Zen 4 with AVX-512 VNNI) it ran 59.5 samples/s against per-batch's 94.0
# (Q/K/V as three MatMuls with FP32 attention instead of QAttention, and the scales' elementwise work): as fast as
# the optimum-style peer, which is no reason to run INT8. So the default is ORT's own, and per-token is the choice
# for results that must not move with batching.
DEFAULT_INT8_ACTIVATIONS = "per-batch"


@dataclass(frozen=True, kw_only=True)
class OrtOptions:
    """Execution providers, the INT8 variant and the calibration method of ONNX Runtime's quantizers."""

    ACCEPTS: ClassVar[Accepts] = Accepts(
        {"fp32": CPU_OR_GPU, "fp16": ("cuda",), "int8": CPU_OR_GPU},
        tasks=SERVED_TASKS,
        hints={
            "fp16": "FP16 on onnxruntime needs the CUDA or TensorRT provider, a GPU",
            "bf16": "use torch for BF16",
        },
    )

    providers: tuple[str, ...] = option(
        (),
        help="onnxruntime execution provider (repeatable; default from --device)",
        choices=PROVIDERS,
        flag="--provider",
        repeat=True,
    )
    calibration_method: str = option("minmax", help="static INT8 range calibration", choices=CALIBRATION_METHODS)
    # ORT's advice without VNNI; measured on the fine-tuned MiniLM (SQuAD dev, ORT dynamic, AVX2 without VNNI):
    # F1 -8.4 against FP32 with per-tensor 7-bit weights, where per-channel 8-bit lost 0.7.
    reduce_range: bool = option(
        False, help="7-bit INT8 weights (ORT's advice without VNNI; cost 8 F1 on MiniLM SQuAD here)"
    )
    int8_weights: str = option("s8", help="INT8 weight type (onnxruntime; u8 only there)", choices=INT8_WEIGHT_TYPES)
    # Default by mode, from the INT8 study (fine-tuned MiniLM, SQuAD dev): dynamic QAttention is faster than FP32
    # attention (56 vs 52 samples/s) and more accurate; static QDQ score MatMuls cost 0.8 F1 and gain nothing.
    quantize_attention: bool | None = option(
        None,
        help="INT8 attention (onnxruntime; default: on when dynamic (QAttention, or its Q/K/V MatMuls with "
        "per-token scales), off when static)",
    )
    # None: DEFAULT_INT8_ACTIVATIONS for dynamic INT8. Static INT8 and the float precisions ignore it (recorded
    # null), as dynamic INT8 ignores the calibration method.
    int8_activations: str | None = option(
        None,
        help="dynamic INT8 activation scales (onnxruntime): per-token (a window's outputs never depend on the "
        "other windows of its batch) or per-batch (ORT's DynamicQuantizeLinear, one scale per batch); default "
        f"{DEFAULT_INT8_ACTIVATIONS}. Not used by static INT8, whose calibrated scales are batch-independent already",
        choices=INT8_ACTIVATION_SCALES,
    )
    export_dir: Path | None = option(None, help="also write the prepared ONNX/OpenVINO artifact here", role=WRITES)

    def device_kind(self, device: str) -> str:
        """The kind of device the session computes on: the first execution provider's when any is given."""
        if self.providers:
            return "cuda" if self.providers[0] in GPU_PROVIDERS else "cpu"
        return device_kind(device)

    def int8_attention(self, quantization: str) -> bool:
        """Whether attention runs in INT8: the flag, or the measured best for the quantization mode."""
        return quantization == "dynamic" if self.quantize_attention is None else self.quantize_attention

    def activation_scales(self, precision: str, quantization: str) -> str | None:
        """per-token or per-batch for dynamic INT8; None where no scale is computed at run time (static, FP)."""
        if precision != "int8" or quantization != "dynamic":
            return None
        return self.int8_activations or DEFAULT_INT8_ACTIVATIONS
