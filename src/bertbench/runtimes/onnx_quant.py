"""INT8 quantization with ONNX Runtime's own tools.

Dynamic: quantize_dynamic on the fused graph (Attention -> QAttention, MatMul -> MatMulInteger); shape inference
fails there unless DefaultTensorType is FLOAT. ORT's activation scales are per tensor, i.e. per batch; per-token
scales (onnx_token_quant) rewrite its output, on a graph fused without Attention when attention is quantized too
(QAttention takes one input scale). Static: QDQ with calibration on a graph fused *without* Attention
(the static quantizer cannot quantize the fused Attention op, whose QKV projections would stay FP32); only MatMuls
with a weight are quantized, attention-score products stay FP32, and so do Gemm heads (the SST-2 pooler and
classifier: ~1 % of linear FLOPs; ORT 1.32 cannot scale the pooler's bias from its Gather input). On x86 without
VNNI, ORT advises reduce_range against saturation in the u8s8 kernels; measured here it costs far more accuracy
(MiniLM SQuAD F1 -8.4 per-tensor 7-bit vs -0.7 per-channel 8-bit), so the defaults are per-channel, full range.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bertbench.choices import CALIBRATION_METHODS
from bertbench.models.bert import INPUT_NAMES
from bertbench.runtimes.onnx_token_quant import per_token_activations

# --calibration-method -> onnxruntime.quantization.CalibrationMethod member
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
assert set(METHODS) == set(CALIBRATION_METHODS), "choices.CALIBRATION_METHODS and the ORT mapping disagree"


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Quantizers (ORT's, NNCF) log advice and warn freely; our output keeps one line per fact."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


@dataclass(frozen=True)
class Int8Variant:
    """How the weights and the graph are quantized (the knobs of the INT8 study)."""

    per_channel: bool = True
    reduce_range: bool = False
    weights: str = "s8"  # s8 or u8
    quantize_attention: bool = True
    activations: str = "per-batch"  # dynamic only: per-batch (ORT's DynamicQuantizeLinear) or per-token scales


def _weight_type(variant: Int8Variant) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if variant.weights == "s8" else QuantType.QUInt8


def _excluded(graph: onnx.GraphProto, keep_fp32: tuple[str, ...]) -> list[str]:
    """Nodes of the encoder layers kept in FP32 ("layer.3"): the exporter names them '/bert/encoder/layer.3/…';
    the optimizer names the fused attention of layer i 'Attention_i'."""
    fused = {f"Attention_{k.split('.')[-1]}" for k in keep_fp32}
    return [n.name for n in graph.node if n.name in fused or any(f"/{k}/" in n.name for k in keep_fp32)]


def quantize_dynamic_int8(source: Path, target: Path, variant: Int8Variant, keep_fp32: tuple[str, ...] = ()) -> None:
    """Dynamic INT8 weights and activations for MatMul (and the fused Attention, unless told not to); per-token
    activation scales when the variant says so (then `source` must hold no fused Attention to quantize)."""
    from onnxruntime.quantization import quantize_dynamic

    model = onnx.load(str(source))
    fused_attention = any(n.op_type == "Attention" for n in model.graph.node)
    if variant.activations == "per-token" and variant.quantize_attention and fused_attention:
        raise ValueError("per-token INT8 attention needs a graph fused without Attention (QAttention has one scale)")
    with quiet_quantizer():
        quantize_dynamic(
            model,
            str(target),
            op_types_to_quantize=["MatMul", "Attention"] if variant.quantize_attention else ["MatMul"],
            per_channel=variant.per_channel,
            reduce_range=variant.reduce_range,
            weight_type=_weight_type(variant),
            nodes_to_exclude=_excluded(model.graph, keep_fp32),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    if variant.activations == "per-token":
        quantized = onnx.load(str(target))
        per_token_activations(quantized)
        onnx.save(quantized, str(target))


class _Reader:
    """CalibrationDataReader over prebuilt batches; set_range lets ORT calibrate a few batches at a time."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self.batches = batches
        self.start, self.end = 0, len(batches)
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.position = start_index, end_index, start_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.end:
            return None
        batch = self.batches[self.position]
        self.position += 1
        return {k: batch[k] for k in INPUT_NAMES}

    def rewind(self) -> None:
        self.position = self.start


def quantize_static_int8(
    source: Path,
    target: Path,
    batches: list[dict[str, np.ndarray]],
    method: str,
    variant: Int8Variant,
    keep_fp32: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Static INT8 (QDQ) of the weight MatMuls, and of the attention-score MatMuls when
    `variant.quantize_attention`; activation ranges calibrated on `batches` one batch at a time (memory cap)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))
    weights = {init.name for init in model.graph.initializer}
    excluded = set(_excluded(model.graph, keep_fp32))
    linear = [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and n.name not in excluded
        and (n.input[1] in weights or (variant.quantize_attention and "/attention/" in n.name))
    ]
    with quiet_quantizer():
        quantize_static(
            str(source),
            str(target),
            _Reader(batches),
            # QOperator (QLinearMatMul) static fails in onnxruntime 1.32 on this graph (no range found for the
            # MatMul inputs: AttributeError in operators/matmul.py); dynamic INT8 is the QOperator form here.
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=linear,
            per_channel=variant.per_channel,
            reduce_range=variant.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=_weight_type(variant),
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            # One batch per collection round (ranges merge across rounds): calibration memory stays one batch.
            # (CalibMaxIntermediateOutputs would be the obvious knob, but ORT 1.32 drops those outputs unused.)
            extra_options={"CalibStridedMinMax": 1, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {"quantized_nodes": len(linear)}
