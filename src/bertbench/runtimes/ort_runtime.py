"""ONNX Runtime: export once, optimise with ORT's BERT fusions, optionally quantize to INT8; artifacts are
cached by model weights, precision and options (a corrupt entry is rebuilt)."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json
from bertbench.models import INPUT_NAMES, BertForMaskedLM, LoadedModel
from bertbench.models.loading import model_fingerprint
from bertbench.runtimes.onnx_graph import (
    OPSET,
    export_onnx,
    fingerprint_batches,
    int8_linear_census,
    optimize_bert_graph,
)
from bertbench.runtimes.onnx_quant import Int8Variant, quantize_dynamic_int8, quantize_static_int8
from bertbench.runtimes.options import RuntimeOptions

CALIBRATION_BATCH = 8
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _calibration_batches(source: Any) -> list[dict[str, np.ndarray]]:
    lengths = np.asarray(source.lengths)
    order = np.argsort(-lengths, kind="stable")  # similar lengths together: less padding to calibrate on
    return [
        source.model_inputs(order[i : i + CALIBRATION_BATCH], int(lengths[order[i : i + CALIBRATION_BATCH]].max()))
        for i in range(0, len(order), CALIBRATION_BATCH)
    ]


class OrtRuntime:
    """Runs an exported, optimised (and possibly quantized) graph in an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self.session: Any = None
        self.output_names: list[str] = []
        self.options = RuntimeOptions()
        self.facts: dict[str, Any] = {}

    def _providers(self, options: RuntimeOptions) -> list[str]:
        import onnxruntime as ort

        wanted = list(options.providers) or (["cuda"] if options.device.startswith("cuda") else ["cpu"])
        available = ort.get_available_providers()
        chosen = []
        for name in wanted:
            provider = PROVIDERS.get(name, name)
            if provider not in available:
                raise BertbenchError(
                    f"execution provider {name}: not available in this onnxruntime ({', '.join(available)}); "
                    "CUDA and TensorRT need a GPU and the onnxruntime-gpu package"
                )
            chosen.append(provider)
        return [*chosen, "CPUExecutionProvider"] if "CPUExecutionProvider" not in chosen else chosen

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions) -> None:
        """Get the artifact (cache or build), then open a session with threads = options.threads."""
        import onnxruntime as ort

        if options.precision == "bf16":
            raise BertbenchError("--precision bf16: not offered on the onnxruntime backend (use torch)")
        providers = self._providers(options)
        gpu = providers[0] != "CPUExecutionProvider"
        if options.precision == "fp16" and not gpu:
            raise BertbenchError("--precision fp16 on onnxruntime needs the CUDA or TensorRT provider (a GPU)")
        if isinstance(loaded.model, BertForMaskedLM):
            raise BertbenchError("--backend onnxruntime runs squad and sst2 models (masked-LM runs on torch)")
        self.options = options
        reduce_range = options.reduce_range
        calibration: list[dict[str, np.ndarray]] = []
        if options.precision == "int8" and options.quantization == "static":
            if options.calibration is None:
                raise BertbenchError("--quantization static needs --calibration-data (training data)")
            calibration = _calibration_batches(options.calibration)
        parts = {
            "model": model_fingerprint(loaded.model),
            "precision": options.precision,
            "quantization": options.quantization if options.precision == "int8" else None,
            "per_channel": options.per_channel,
            "reduce_range": reduce_range,
            "int8_weights": options.int8_weights,
            "quantize_attention": options.int8_attention(),
            "calibration_method": options.calibration_method if calibration else None,
            "calibration": fingerprint_batches(calibration) if calibration else None,
            "keep_fp32": list(options.keep_fp32),
            "opset": OPSET,
            "versions": [metadata.version(p) for p in ("torch", "onnx", "onnxruntime")],
        }
        cache = Cache(options.cache_dir)
        entry, hit = cache.get_or_build(
            "onnx", parts, lambda d: self._build(loaded, options, reduce_range, calibration, d)
        )
        artifact = json.loads((entry / "artifact.json").read_text())
        if options.export_dir is not None:
            shutil.copytree(entry, options.export_dir, dirs_exist_ok=True)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(entry / "model.onnx"), session_options, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.facts = {
            **artifact,
            "providers": providers,
            "artifact_cache_hit": hit,
            "artifact_dir": str(entry),
            "rebuilt_corrupt_artifacts": cache.rebuilt_corrupt,
        }

    def _build(
        self,
        loaded: LoadedModel,
        options: RuntimeOptions,
        reduce_range: bool,
        calibration: list[dict[str, np.ndarray]],
        directory: Path,
    ) -> None:
        config = loaded.model.config
        work = directory / "work"
        work.mkdir()
        export_onnx(loaded.model, work / "exported.onnx")
        static = options.precision == "int8" and options.quantization == "static"
        fused = optimize_bert_graph(
            work / "exported.onnx",
            work / "optimized.onnx",
            config.num_attention_heads,
            config.hidden_size,
            fuse_attention=not static,
        )
        facts: dict[str, Any] = {"fused_ops": fused, "opset": OPSET, "graph_optimizer": "onnxruntime.transformers"}
        final = directory / "model.onnx"
        if options.precision == "int8":
            variant = Int8Variant(
                per_channel=options.per_channel,
                reduce_range=reduce_range,
                weights=options.int8_weights,
                quantize_attention=options.int8_attention(),
            )
            facts.update(
                {
                    "quantization": options.quantization,
                    "per_channel": options.per_channel,
                    "reduce_range": reduce_range,
                    "int8_weights": options.int8_weights,
                    "quantize_attention": options.int8_attention(),
                    "keep_fp32": list(options.keep_fp32),
                }
            )
            if static:
                extra = quantize_static_int8(
                    work / "optimized.onnx",
                    final,
                    calibration,
                    options.calibration_method,
                    variant,
                    options.keep_fp32,
                )
                samples = sum(len(b["input_ids"]) for b in calibration)
                facts.update(
                    {
                        "quantization_format": "QDQ (static)",
                        "calibration_method": options.calibration_method,
                        "calibration_samples": samples,
                        **extra,
                    }
                )
            else:
                quantize_dynamic_int8(work / "optimized.onnx", final, variant, options.keep_fp32)
                attention = "QAttention, " if options.int8_attention() else "FP32 Attention, "
                facts["quantization_format"] = f"QOperator (dynamic: {attention}MatMulInteger)"
            int8, total = int8_linear_census(final)
            facts["int8_linear_fraction"] = int8 / total if total else 0.0
            facts["partial_int8"] = facts["int8_linear_fraction"] < 0.9
        elif options.precision == "fp16":
            from onnxruntime.transformers.onnx_model import OnnxModel

            model = OnnxModel(onnx.load(str(work / "optimized.onnx")))
            model.convert_float_to_float16(keep_io_types=True)
            model.save_model_to_file(str(final))
        else:
            shutil.move(work / "optimized.onnx", final)
        shutil.rmtree(work)
        atomic_write_json(directory / "artifact.json", facts)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One session run on the three int64 inputs."""
        outputs = self.session.run(self.output_names, {name: inputs[name] for name in INPUT_NAMES})
        return dict(zip(self.output_names, outputs, strict=True))

    def describe(self) -> dict[str, Any]:
        """Backend facts for metrics.json."""
        return {
            "backend": self.name,
            "precision": self.options.precision,
            "device": self.options.device,
            "emulated": False,
            **self.facts,
        }
