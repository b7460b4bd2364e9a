"""ONNX Runtime: export once, optimise with ORT's BERT fusions, optionally quantize to INT8; artifacts are
cached by model weights, precision and options (a corrupt entry is rebuilt)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json
from bertbench.models import INPUT_NAMES, BertForMaskedLM, LoadedModel
from bertbench.runtimes.onnx_graph import (
    OPSET,
    artifact_key,
    export_artifact,
    export_onnx,
    fingerprint_batches,
    int8_linear_census,
    optimize_bert_graph,
)
from bertbench.runtimes.onnx_quant import Int8Variant, quantize_dynamic_int8, quantize_static_int8
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.tasks.batching import plan_batches

CALIBRATION_BATCH = 8
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _calibration_batches(source: Any) -> list[dict[str, np.ndarray]]:
    """Calibration samples in sorted batches (similar lengths together: less padding to calibrate on)."""
    plan = plan_batches(np.asarray(source.lengths), CALIBRATION_BATCH, "sorted", max_seq_length=0)
    return [source.model_inputs(rows, seq_len) for rows, seq_len in zip(plan.rows, plan.seq_lens, strict=True)]


class OrtRuntime:
    """Runs an exported, optimised (and possibly quantized) graph in an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self.session: Any = None
        self.output_names: list[str] = []
        self.options = RuntimeOptions(backend=self.name)
        self.device = "cpu"
        self.facts: dict[str, Any] = {}

    @staticmethod
    def _providers(options: RuntimeOptions, device: str) -> list[str]:
        import onnxruntime as ort

        wanted = list(options.own.providers) or (["cuda"] if device.startswith("cuda") else ["cpu"])
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

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
        """Get the artifact (cache or build), then open a session with placement.threads threads."""
        import onnxruntime as ort

        if options.backend != self.name:
            raise ValueError(f"the {self.name} runtime was handed the options of --backend {options.backend}")
        options.check(placement.device, calibration=placement.calibration is not None)
        providers = self._providers(options, placement.device)
        if isinstance(loaded.model, BertForMaskedLM):
            raise BertbenchError("--backend onnxruntime does not run masked-LM models (they run on torch)")
        self.options, self.device = options, placement.device
        own = options.own
        calibration: list[dict[str, np.ndarray]] = []
        if options.static_int8:
            calibration = _calibration_batches(placement.calibration)
        parts = artifact_key(
            loaded,
            options.precision,
            options.keep_fp32,
            ("torch", "onnx", "onnxruntime"),
            quantization=options.quantization if options.precision == "int8" else None,
            per_channel=options.per_channel,
            reduce_range=own.reduce_range,
            int8_weights=own.int8_weights,
            quantize_attention=own.int8_attention(options.quantization),
            int8_activations=own.activation_scales(options.precision, options.quantization),
            calibration_method=own.calibration_method if calibration else None,
            calibration=fingerprint_batches(calibration) if calibration else None,
        )
        cache = Cache(placement.cache_dir)
        entry, hit = cache.get_or_build("onnx", parts, lambda d: self._build(loaded, options, calibration, d))
        artifact = json.loads((entry / "artifact.json").read_text())
        export_artifact(entry, own.export_dir)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = placement.threads
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

    @staticmethod
    def _build(
        loaded: LoadedModel, options: RuntimeOptions, calibration: list[dict[str, np.ndarray]], directory: Path
    ) -> None:
        config = loaded.model.config
        own = options.own
        attention = own.int8_attention(options.quantization)
        activations = own.activation_scales(options.precision, options.quantization)
        work = directory / "work"
        work.mkdir()
        export_onnx(loaded.model, work / "exported.onnx")
        static = options.static_int8
        # QAttention scales its input by one number, so per-token INT8 attention quantizes the Q/K/V projections
        # as plain MatMuls (the score products stay FP32, as inside QAttention): a graph fused without Attention.
        fuse_attention = not static and not (activations == "per-token" and attention)
        fused = optimize_bert_graph(
            work / "exported.onnx",
            work / "optimized.onnx",
            # 0 = read each layer's head count from the graph: a pruned model's layers differ
            0 if config.pruned_heads else config.num_attention_heads,
            0 if config.pruned_heads else config.hidden_size,
            fuse_attention=fuse_attention,
        )
        facts: dict[str, Any] = {"fused_ops": fused, "opset": OPSET, "graph_optimizer": "onnxruntime.transformers"}
        final = directory / "model.onnx"
        if options.precision == "int8":
            variant = Int8Variant(
                per_channel=options.per_channel,
                reduce_range=own.reduce_range,
                weights=own.int8_weights,
                quantize_attention=attention,
                activations=activations or "per-batch",
            )
            facts.update(
                {
                    "quantization": options.quantization,
                    "per_channel": options.per_channel,
                    "reduce_range": own.reduce_range,
                    "int8_weights": own.int8_weights,
                    "quantize_attention": attention,
                    "int8_activations": activations,
                    "keep_fp32": list(options.keep_fp32),
                }
            )
            if static:
                extra = quantize_static_int8(
                    work / "optimized.onnx",
                    final,
                    calibration,
                    own.calibration_method,
                    variant,
                    options.keep_fp32,
                )
                samples = sum(len(b["input_ids"]) for b in calibration)
                facts.update(
                    {
                        "quantization_format": "QDQ (static)",
                        "calibration_method": own.calibration_method,
                        "calibration_samples": samples,
                        **extra,
                    }
                )
            else:
                quantize_dynamic_int8(work / "optimized.onnx", final, variant, options.keep_fp32)
                if activations == "per-token":
                    kind = "FP32 attention scores, " if attention else "FP32 Attention, "
                    facts["quantization_format"] = f"QOperator (dynamic, per-token scales: {kind}MatMulInteger)"
                else:
                    kind = "QAttention, " if attention else "FP32 Attention, "
                    facts["quantization_format"] = f"QOperator (dynamic: {kind}MatMulInteger)"
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
            "device": self.device,
            "emulated": False,
            **self.facts,
        }
