"""OpenVINO: FP32 from our ONNX export (OpenVINO converts it and applies its own CPU graph transformations),
INT8 through NNCF post-training quantization calibrated on training data. Artifacts (model.xml + model.bin) are
cached by model weights, precision and options; a corrupt entry is rebuilt."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.cache import Cache
from bertbench.console import warn
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json
from bertbench.models import INPUT_NAMES, BertForMaskedLM, LoadedModel
from bertbench.runtimes.onnx_graph import OPSET, artifact_key, export_artifact, export_onnx, fingerprint_batches
from bertbench.runtimes.onnx_quant import quiet_quantizer
from bertbench.runtimes.options import Placement, RuntimeOptions

ARTIFACT = "model.xml"


def calibration_items(source: Any) -> list[dict[str, np.ndarray]]:
    """One calibration item per sample at its own length: no padding enters the activation ranges."""
    lengths = np.asarray(source.lengths)
    return [source.model_inputs(np.asarray([row]), int(lengths[row])) for row in range(len(lengths))]


def _check_options(loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
    """Refuse what this backend cannot honour here, in one line each (the configs checked the combination)."""
    options.check(placement.device, calibration=placement.calibration is not None)
    if isinstance(loaded.model, BertForMaskedLM):
        raise BertbenchError("--backend openvino does not run masked-LM models (they run on torch)")


class OpenVinoRuntime:
    """Runs a converted (and possibly NNCF-quantized) model on OpenVINO's CPU plugin."""

    name = "openvino"

    def __init__(self) -> None:
        self.request: Any = None
        self.output_names: list[str] = []
        self.options = RuntimeOptions(backend=self.name)
        self.device = "cpu"
        self.facts: dict[str, Any] = {}

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
        """Get the artifact (cache or build), then compile it for the CPU with placement.threads threads."""
        if options.backend != self.name:
            raise ValueError(f"the {self.name} runtime was handed the options of --backend {options.backend}")
        _check_options(loaded, options, placement)
        self.options, self.device = options, placement.device
        own = options.own
        items = calibration_items(placement.calibration) if options.precision == "int8" else []
        parts = artifact_key(
            loaded,
            options.precision,
            options.keep_fp32,
            ("torch", "onnx", "openvino", "nncf"),
            per_channel=options.per_channel if items else None,
            reduce_range=own.reduce_range if items else None,
            calibration=fingerprint_batches(items) if items else None,
        )
        cache = Cache(placement.cache_dir)
        entry, hit = cache.get_or_build("openvino", parts, lambda d: self._build(loaded, options, items, d))
        try:
            compiled = self._compile(entry, placement.threads, options.precision)
        except RuntimeError as error:
            # The manifest matched but OpenVINO cannot read the files (edited together with their hashes, or a
            # version mismatch): one line, then the entry is rebuilt once.
            warn(f"{entry}: OpenVINO cannot read this cached artifact ({str(error).splitlines()[0]}); rebuilding")
            shutil.rmtree(entry, ignore_errors=True)
            cache.rebuilt_corrupt += 1
            entry, hit = cache.get_or_build("openvino", parts, lambda d: self._build(loaded, options, items, d))
            compiled = self._compile(entry, placement.threads, options.precision)
        export_artifact(entry, own.export_dir)
        self.request = compiled.create_infer_request()
        self.output_names = list(loaded.model.output_names)
        self.facts = {
            **json.loads((entry / "artifact.json").read_text()),
            "artifact_cache_hit": hit,
            "artifact_dir": str(entry),
            "rebuilt_corrupt_artifacts": cache.rebuilt_corrupt,
            "openvino_threads": compiled.get_property("INFERENCE_NUM_THREADS"),
            # what the plugin computes in, as it reports it (bf16 only where the CPU has it)
            "openvino_inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
        }

    @staticmethod
    def _compile(entry: Path, threads: int, precision: str) -> Any:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(entry / ARTIFACT))
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,  # one request at a time: instances, not streams, are the parallelism lever
            "PERFORMANCE_HINT": "LATENCY",
            # FP32 and INT8 never silently downcast to BF16 on CPUs that have it; bf16 is asked for by name
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        return core.compile_model(model, "CPU", config)

    @classmethod
    def _build(
        cls, loaded: LoadedModel, options: RuntimeOptions, items: list[dict[str, np.ndarray]], directory: Path
    ) -> None:
        import openvino as ov

        work = directory / "work"
        work.mkdir()
        export_onnx(loaded.model, work / "exported.onnx")
        model = ov.convert_model(str(work / "exported.onnx"))
        facts: dict[str, Any] = {"converted_from": "ONNX (torch.onnx TorchScript export)", "opset": OPSET}
        if options.precision == "int8":
            model = cls._quantize(model, items, options)
            facts.update(
                {
                    "quantization": "static",
                    "quantization_format": "NNCF post-training (FakeQuantize, OpenVINO INT8 kernels)",
                    "calibration_samples": len(items),
                    "per_channel": options.per_channel,
                    "reduce_range": options.own.reduce_range,
                    "keep_fp32": list(options.keep_fp32),
                }
            )
            int8, total = _int8_census(model)
            facts["int8_linear_fraction"] = int8 / total if total else 0.0
            facts["partial_int8"] = facts["int8_linear_fraction"] < 0.9
        ov.save_model(model, str(directory / ARTIFACT), compress_to_fp16=False)
        shutil.rmtree(work)
        atomic_write_json(directory / "artifact.json", facts)

    @staticmethod
    def _quantize(model: Any, items: list[dict[str, np.ndarray]], options: RuntimeOptions) -> Any:
        """NNCF PTQ for transformers: INT8 weights, asymmetric activations where it helps (MIXED preset)."""
        os.environ.setdefault("NNCF_NO_TELEMETRY", "1")
        # NNCF also draws rich progress bars on stdout: hidden, our own progress covers the build
        with quiet_quantizer(), contextlib.redirect_stdout(io.StringIO()):
            import nncf
            from nncf.quantization.advanced_parameters import (
                AdvancedQuantizationParameters,
                OverflowFix,
                QuantizationParameters,
            )

            advanced = AdvancedQuantizationParameters(
                # reduce_range is ORT's name for 7-bit weights against u8s8 saturation; NNCF calls it overflow fix
                overflow_fix=OverflowFix.ENABLE if options.own.reduce_range else OverflowFix.DISABLE,
                weights_quantization_params=QuantizationParameters(per_channel=options.per_channel),
            )
            scope = nncf.IgnoredScope(patterns=[f".*/{k}/.*" for k in options.keep_fp32], validate=False)
            return nncf.quantize(
                model,
                nncf.Dataset(items),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(items),
                ignored_scope=scope,
                advanced_parameters=advanced,
            )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous request on the three int64 inputs."""
        self.request.infer({name: inputs[name] for name in INPUT_NAMES})
        return {
            name: np.array(self.request.get_output_tensor(i).data, dtype=np.float32)
            for i, name in enumerate(self.output_names)
        }

    def describe(self) -> dict[str, Any]:
        """Backend facts for metrics.json."""
        return {
            "backend": self.name,
            "precision": self.options.precision,
            "device": self.device,
            "emulated": False,
            **self.facts,
        }


def _type_name(value: Any) -> str:
    """OpenVINO's element type as it names it ("bf16", "f32")."""
    name = getattr(value, "get_type_name", None)
    return name() if callable(name) else str(value)


def _int8_census(model: Any) -> tuple[int, int]:
    """(weights behind an INT8 FakeQuantize, all weights) over MatMuls with a constant weight: the share of linear
    FLOPs that NNCF made INT8."""
    int8 = total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        producer = op.input_value(1).get_node()
        quantized = False
        # weight path: Constant [-> Convert] [-> FakeQuantize] [-> Transpose/Reshape]
        while producer.get_type_name() in ("FakeQuantize", "Convert", "Transpose", "Reshape", "Multiply", "Subtract"):
            quantized = quantized or producer.get_type_name() == "FakeQuantize"
            producer = producer.input_value(0).get_node()
        if producer.get_type_name() != "Constant":
            continue
        quantized = quantized or producer.get_output_element_type(0).get_type_name() in ("i8", "u8")
        size = int(np.prod(list(producer.get_output_shape(0))))
        total += size
        int8 += size if quantized else 0
    return int8, total
