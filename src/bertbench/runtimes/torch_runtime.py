"""PyTorch eager runtime: FP32, BF16 (CUDA, or emulated on CPUs without it), FP16 (CUDA), INT8 dynamic
(CPU), optionally through torch.compile."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from bertbench.errors import BertbenchError
from bertbench.hardware import has_native_bf16
from bertbench.models import BertHeadModel, LoadedModel
from bertbench.runtimes.options import Placement, RuntimeOptions
from bertbench.runtimes.torch_quant import int8_linear_fraction, quantize_linear_dynamic


class TorchRuntime:
    """Runs the model in PyTorch under inference_mode."""

    name = "torch"

    def __init__(self) -> None:
        self.model: BertHeadModel | None = None
        self.forward: Any = None
        self.options = RuntimeOptions(backend=self.name)
        self.device = "cpu"
        self.facts: dict[str, Any] = {}

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions, placement: Placement) -> None:
        """Convert a copy of the model to the requested precision on the device."""
        if options.backend != self.name:
            raise ValueError(f"the {self.name} runtime was handed the options of --backend {options.backend}")
        cuda = placement.device.startswith("cuda")
        if cuda and not torch.cuda.is_available():
            raise BertbenchError(f"--device {placement.device}: no CUDA device is available")
        options.check(placement.device)  # the configs checked it already; a library caller gets the same line
        self.options, self.device = options, placement.device
        model = loaded.model if options.precision == "fp32" else copy.deepcopy(loaded.model)
        model = model.eval().to(placement.device)
        self.facts = {"emulated": False}
        if options.precision == "bf16":
            model = model.to(torch.bfloat16)
            self.facts["emulated"] = not cuda and not has_native_bf16()
        elif options.precision == "fp16":
            model = model.half()
        elif options.precision == "int8":
            model = quantize_linear_dynamic(model, options.keep_fp32, options.per_channel)
            fraction = int8_linear_fraction(model)
            self.facts.update(
                {
                    "quantization": "dynamic",
                    "quantization_format": "torch.ao dynamic (qint8)",
                    "quantize_attention": False,  # torch.ao quantizes nn.Linear only
                    "per_channel": options.per_channel,
                    "int8_linear_fraction": fraction,
                    "partial_int8": fraction < 0.9,
                    "keep_fp32": list(options.keep_fp32),
                }
            )
        self.model = model
        self.forward = model
        compile_model = options.own.compile
        if compile_model:
            import torch._inductor.config as inductor

            # Freezing folds the (inference-only) weights into the graph as constants, so inductor can pre-pack
            # them for its GEMMs instead of reading parameters on every call.
            inductor.freezing = True
            self.forward = torch.compile(model, dynamic=True)
        self.facts.update({"compiled": compile_model, "inductor_freezing": compile_model})

    @torch.inference_mode()
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass; outputs come back as float32 numpy arrays."""
        assert self.model is not None, "prepare() first"
        tensors = {k: torch.from_numpy(inputs[k]).to(self.device) for k in self.model.input_names if k in inputs}
        outputs = self.forward(**tensors)
        return {name: out.float().cpu().numpy() for name, out in zip(self.model.output_names, outputs, strict=True)}

    def describe(self) -> dict[str, Any]:
        """Backend facts for metrics.json."""
        return {"backend": self.name, "precision": self.options.precision, "device": self.device, **self.facts}
