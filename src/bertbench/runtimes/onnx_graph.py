"""Export to ONNX, ONNX Runtime's BERT graph optimizer, a census of what the graph runs in INT8, and the hash of
calibration batches that keys a quantized artifact.

Export uses the TorchScript exporter with the explicit (eager) attention: with torch 2.13's dynamo exporter and
SDPA the ORT optimizer fuses no Attention node. The dummy batch is padded (batch 2, ragged mask) so that the
mask path is traced as it is used.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from bertbench.errors import BertbenchError
from bertbench.models import INPUT_NAMES, BertHeadModel, LoadedModel
from bertbench.models.loading import model_fingerprint

OPSET = 17


def export_onnx(model: BertHeadModel, path: Path) -> None:
    """Write `model` to `path` (weights inline) with dynamic batch and sequence axes."""
    model = copy.deepcopy(model).float().eval().cpu()
    model.bert.set_attention_implementation("eager")
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    for name in model.output_names:
        axes[name] = {0: "batch", 1: "sequence"} if name in model.sequence_outputs else {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask, types),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(model.output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    _restore_unused_inputs(path)


def _restore_unused_inputs(path: Path) -> None:
    """Put back an input the exporter dropped because nothing reads it (see _add_missing_inputs)."""
    model = onnx.load(str(path))
    if _add_missing_inputs(model):
        onnx.save(model, str(path))


def _add_missing_inputs(model: onnx.ModelProto) -> bool:
    """Give `model` (an onnx ModelProto) every input of INPUT_NAMES, in that order, where the exporter or the
    optimizer dropped one that nothing reads (attention_mask, when pruning removed every head): the graph's inputs
    are a contract (the runtimes feed, and `--export-dir` users call, all three). Whether it changed anything."""
    present = {value.name for value in model.graph.input}
    missing = [name for name in INPUT_NAMES if name not in present]
    for name in missing:
        model.graph.input.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, ["batch", "sequence"])
        )
    if missing:
        order = {name: index for index, name in enumerate(INPUT_NAMES)}
        inputs = sorted(model.graph.input, key=lambda value: order.get(value.name, len(order)))
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    return bool(missing)


def optimize_bert_graph(
    source: Path, target: Path, num_heads: int, hidden_size: int, fuse_attention: bool = True
) -> dict[str, int]:
    """Run ORT's transformer optimizer for BERT; returns the fused-operator counts (non-zero ones)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = fuse_attention
    previous = logging.root.manager.disable
    # With per-layer head counts (a pruned model) the fusion logs a warning per layer although it fuses each one.
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(source),
                model_type="bert",
                num_heads=num_heads,
                hidden_size=hidden_size,
                optimization_options=options,
                opt_level=0,
            )
    finally:
        logging.disable(previous)
    _add_missing_inputs(optimized.model)  # the optimizer prunes graph inputs that nothing reads
    optimized.save_model_to_file(str(target))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def artifact_key(
    loaded: LoadedModel, precision: str, keep_fp32: tuple[str, ...], packages: tuple[str, ...], **specific: Any
) -> dict[str, Any]:
    """The cache key parts of an exported (and converted, quantized) artifact: the weights, the precision, the layers
    kept in FP32, the opset and the versions of `packages`, plus what the backend adds (its INT8 settings)."""
    return {
        "model": model_fingerprint(loaded.model),
        "precision": precision,
        **specific,
        "keep_fp32": list(keep_fp32),
        "opset": OPSET,
        "versions": [metadata.version(package) for package in packages],
    }


def export_artifact(entry: Path, export_dir: Path | None) -> None:
    """--export-dir: a copy of the cached artifact for deployment. An earlier export (it holds the artifact's
    manifest.json and artifact.json) is replaced; a folder holding anything else is refused."""
    if export_dir is None:
        return
    if export_dir.exists():
        ours = (export_dir / "manifest.json").is_file() and (export_dir / "artifact.json").is_file()
        if not export_dir.is_dir() or (any(export_dir.iterdir()) and not ours):
            raise BertbenchError(
                f"{export_dir}: --export-dir holds files that are not an earlier export; choose another"
            )
        shutil.rmtree(export_dir)
    shutil.copytree(entry, export_dir)


def fingerprint_batches(batches: list[dict[str, np.ndarray]]) -> str:
    """SHA-256 of the model inputs of calibration batches (part of a quantized artifact's cache key)."""
    digest = hashlib.sha256()
    for batch in batches:
        for name in INPUT_NAMES:
            digest.update(np.ascontiguousarray(batch[name]).tobytes())
    return digest.hexdigest()


# Operator -> index of its weight input, for the linear operators we count.
_FLOAT_LINEAR = {"MatMul": 1, "Gemm": 1, "Attention": 1, "FusedMatMul": 1}
_INT8_LINEAR = {
    "MatMulInteger": 1,
    "DynamicQuantizeMatMul": 1,
    "QAttention": 1,
    "QLinearMatMul": 3,
    "MatMulIntegerToFloat": 1,
}


def int8_linear_census(path: Path) -> tuple[int, int]:
    """(weights in INT8, all weights) over the graph's linear operators — a proxy for linear FLOPs, since
    each weight element costs the same multiply-adds per token. Activation-by-activation products (attention
    scores) have no weight and are not counted."""
    graph = onnx.load(str(path)).graph
    inits = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def weight(name: str) -> onnx.TensorProto | None:
        if name in inits:
            return inits[name]
        node = producers.get(name)
        # QDQ: weight -> DequantizeLinear -> MatMul; Transpose/Reshape may sit between.
        while node is not None and node.op_type in ("Transpose", "Reshape", "DequantizeLinear"):
            if node.op_type == "DequantizeLinear" and node.input[0] in inits:
                return inits[node.input[0]]
            node = producers.get(node.input[0])
        return None

    int8 = total = 0
    for node in graph.node:
        index = _FLOAT_LINEAR.get(node.op_type, _INT8_LINEAR.get(node.op_type))
        if index is None or index >= len(node.input):
            continue
        tensor = weight(node.input[index])
        if tensor is None:
            continue
        size = int(np.prod(tensor.dims))
        total += size
        if numpy_helper.to_array(tensor).dtype in (np.int8, np.uint8):
            int8 += size
    return int8, total
