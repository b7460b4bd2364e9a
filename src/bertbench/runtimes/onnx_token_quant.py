"""Per-token activation scales for ONNX Runtime's dynamic INT8 graph.

ORT's `quantize_dynamic` puts a DynamicQuantizeLinear before each MatMulInteger: one scale and zero point for the
whole activation tensor, i.e. for the whole batch, so a window's outputs depend on the other windows of its batch.
`per_token_activations` rewrites that graph so that each row of the last axis (one token) gets its own symmetric
scale, max|x| / 127, with the zero point fixed at 128 (uint8): MatMulInteger's kernels take one zero point for A,
which a fixed one satisfies. The integer GEMM is exact, so a token's result no longer depends on its batch-mates.

ORT's quantizer follows each MatMulInteger with Cast -> Mul(., Mul(activation scale, weight scale)), which ORT's
session optimizer fuses into MatMulIntegerToFloat, taking in the Add of a bias that follows. With a [..., 1] scale
that fused kernel adds the bias *before* it applies the activation scale (onnxruntime 1.32; measured: fine-tuned
MiniLM's SQuAD logits at cosine 0.93 to FP32), so the rewrite states the product itself:
MatMulIntegerToFloat(A scale 1, the weight's scale) -> Mul(per-token scale), and a bias Add stays after it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bertbench.errors import BertbenchError

# Shared constants of every rewritten quantizer (initializers, one copy each).
_Q_MAX = "per_token_quant/q_max"  # 127: the symmetric int8 range
_FLOOR = "per_token_quant/scale_floor"
_OFFSET = "per_token_quant/offset"  # 128: int8 -> uint8
_LOW, _HIGH = "per_token_quant/low", "per_token_quant/high"
_ONE = "per_token_quant/one"  # the A scale of MatMulIntegerToFloat: the token's own scale is applied after it
_AXES = "per_token_quant/axes"
# Floor for an all-zero token's scale (0/0 would be NaN). Any positive floor is exact: a token whose max|x|/127 is
# below it has |x| / floor < 127, so nothing saturates.
SCALE_FLOOR = 1e-30

Consumers = dict[str, list[tuple[onnx.NodeProto, int]]]  # tensor -> (node, input position) of each use


@dataclass
class _Gemm:
    """One MatMulInteger of ORT's pattern and the nodes after it that turn its int32 product into floats."""

    gemm: onnx.NodeProto  # MatMulInteger(x_q, W, x_zero_point, W_zero_point)
    dropped: list[onnx.NodeProto]  # the Cast, the rescaling Mul and the Mul of the two scales
    weight_scale: str
    output: str  # the float product the rest of the graph reads


def _constants(opset: int) -> list[TensorProto]:
    scalars = {_Q_MAX: 127.0, _FLOOR: SCALE_FLOOR, _OFFSET: 128.0, _LOW: 0.0, _HIGH: 255.0, _ONE: 1.0}
    tensors = [numpy_helper.from_array(np.array(v, dtype=np.float32), name) for name, v in scalars.items()]
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on, as an attribute before
        tensors.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), _AXES))
    return tensors


def _quantizer(x: str, quantized: str, scale: str, prefix: str, opset: int) -> list[onnx.NodeProto]:
    """Nodes computing, per row of x's last axis, scale = max(max|x| / 127, floor) and
    quantized = uint8(clip(round(x / scale) + 128, 0, 255))."""

    def name(step: str) -> str:
        return f"{prefix}/{step}"

    if opset >= 18:
        reduce = helper.make_node("ReduceMax", [name("abs"), _AXES], [name("max")], name("ReduceMax"), keepdims=1)
    else:
        reduce = helper.make_node("ReduceMax", [name("abs")], [name("max")], name("ReduceMax"), axes=[-1], keepdims=1)
    return [
        helper.make_node("Abs", [x], [name("abs")], name("Abs")),
        reduce,
        helper.make_node("Div", [name("max"), _Q_MAX], [name("raw_scale")], name("DivScale")),
        helper.make_node("Max", [name("raw_scale"), _FLOOR], [scale], name("Floor")),
        helper.make_node("Div", [x, scale], [name("scaled")], name("Div")),
        helper.make_node("Round", [name("scaled")], [name("rounded")], name("Round")),  # half to even, as ORT's
        helper.make_node("Add", [name("rounded"), _OFFSET], [name("shifted")], name("Shift")),
        # |round(x / scale)| <= 127 by construction; the clip keeps the cast defined whatever comes in
        helper.make_node("Clip", [name("shifted"), _LOW, _HIGH], [name("clipped")], name("Clip")),
        helper.make_node("Cast", [name("clipped")], [quantized], name("Cast"), to=TensorProto.UINT8),
    ]


def _only_use(tensor: str, consumers: Consumers, op_type: str, where: str) -> tuple[onnx.NodeProto, int]:
    uses = consumers[tensor]
    if len(uses) != 1 or uses[0][0].op_type != op_type:
        found = ", ".join(f"{n.op_type} {n.name}" for n, _ in uses) or "nothing"
        raise BertbenchError(f"per-token INT8: {where} feeds {found}, not one {op_type} (ORT's MatMulInteger pattern)")
    return uses[0]


def _gemm_chain(
    gemm: onnx.NodeProto,
    scale: str,
    consumers: Consumers,
    producers: dict[str, onnx.NodeProto],
    weights: dict[str, int],
) -> _Gemm:
    """Match MatMulInteger -> Cast -> Mul(., Mul(scale, weight scale)), exactly, or refuse: a per-token scale is
    right only where it multiplies the product row by row."""
    cast, _ = _only_use(gemm.output[0], consumers, "Cast", gemm.name)
    rescale, position = _only_use(cast.output[0], consumers, "Mul", cast.name)
    scales = producers.get(rescale.input[1 - position])
    if scales is None or scales.op_type != "Mul" or scale not in scales.input or len(consumers[scales.output[0]]) != 1:
        raise BertbenchError(f"per-token INT8: {rescale.name} does not rescale {gemm.name} by its activation scale")
    weight_scale = scales.input[1] if scales.input[0] == scale else scales.input[0]
    if weights.get(weight_scale, 2) > 1:  # a weight's scale: one, or one per output channel
        raise BertbenchError(f"per-token INT8: {scales.name} multiplies the activation scale by no weight scale")
    return _Gemm(gemm, [cast, rescale, scales], weight_scale, rescale.output[0])


def _rescaled(match: _Gemm, scale: str, zero_point: str) -> list[onnx.NodeProto]:
    """The product in floats: MatMulIntegerToFloat with the weight's scale, then each token's own scale."""
    gemm = match.gemm
    weight_zero_point = gemm.input[3] if len(gemm.input) > 3 else ""
    product = f"{gemm.name}/per_token/product"
    return [
        helper.make_node(
            "MatMulIntegerToFloat",
            [gemm.input[0], gemm.input[1], _ONE, match.weight_scale, zero_point, weight_zero_point],
            [product],
            f"{gemm.name}/per_token/MatMulIntegerToFloat",
            domain="com.microsoft",
        ),
        helper.make_node("Mul", [product, scale], [match.output], f"{gemm.name}/per_token/Rescale"),
    ]


def per_token_activations(model: onnx.ModelProto) -> int:
    """Rewrite `model` (ORT quantize_dynamic's output) in place: every DynamicQuantizeLinear becomes a per-token
    quantizer and each of its MatMulIntegers a per-token rescaled product; returns how many quantizers were
    rewritten. Anything but ORT's MatMulInteger pattern is refused, so no per-batch scale is left behind silently."""
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    weights = {init.name: len(init.dims) for init in graph.initializer}  # name -> rank
    producers = {tensor: node for node in graph.node for tensor in node.output}
    consumers: Consumers = defaultdict(list)
    for node in graph.node:
        for position, tensor in enumerate(node.input):
            consumers[tensor].append((node, position))
    outputs = {o.name for o in graph.output}
    # Nodes are keyed by their first output (names may be empty; outputs are unique)
    replaced: dict[str, list[onnx.NodeProto]] = {}  # node -> the nodes that take its place
    dropped: set[str] = set()
    stale: set[str] = set()  # tensors that change shape or disappear: value_info recorded for them is wrong
    zero_points: list[TensorProto] = []
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        quantized, scale, zero_point = node.output
        if outputs & set(node.output):
            raise BertbenchError(f"per-token INT8: {node.name}'s outputs are graph outputs")
        uses = [(user, position, 0) for user, position in consumers[quantized]]
        uses += [(user, position, 2) for user, position in consumers[zero_point]]
        for user, position, expected in uses:
            if user.op_type != "MatMulInteger" or position != expected:
                raise BertbenchError(f"per-token INT8: {node.name} feeds {user.op_type} {user.name} (input {position})")
        gemms = [_gemm_chain(user, scale, consumers, producers, weights) for user, _ in consumers[quantized]]
        if {n.output[0] for n, _ in consumers[scale]} != {g.dropped[2].output[0] for g in gemms}:
            raise BertbenchError(f"per-token INT8: the scale of {node.name} goes elsewhere than its products")
        replaced[node.output[0]] = _quantizer(node.input[0], quantized, scale, f"{node.name}/per_token", opset)
        for match in gemms:
            replaced[match.gemm.output[0]] = _rescaled(match, scale, zero_point)
            dropped.update(n.output[0] for n in match.dropped)
            stale.update(t for n in [match.gemm, *match.dropped] for t in n.output if t != match.output)
        zero_points.append(numpy_helper.from_array(np.array(128, dtype=np.uint8), zero_point))
        stale.update((scale, zero_point))
    if not zero_points:
        return 0
    kept_nodes = [node for node in graph.node if node.output[0] not in dropped]
    nodes = [new for node in kept_nodes for new in replaced.get(node.output[0], [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([*_constants(opset), *zero_points])
    kept_info = [v for v in graph.value_info if v.name not in stale]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    return len(zero_points)
