"""PyTorch eager runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bertbench.errors import BertbenchError
from bertbench.models import BertHeadModel, LoadedModel
from bertbench.runtimes.base import RuntimeOptions


class TorchRuntime:
    """Runs the model in PyTorch eager mode under inference_mode."""

    name = "torch"

    def __init__(self) -> None:
        self.model: BertHeadModel | None = None
        self.options = RuntimeOptions()

    def prepare(self, loaded: LoadedModel, options: RuntimeOptions) -> None:
        """Move the model to the device; only FP32 exists in this runtime so far."""
        if options.precision != "fp32":
            raise BertbenchError(f"--precision {options.precision}: not available on the torch runtime yet")
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise BertbenchError(f"--device {options.device}: no CUDA device is available")
        self.options = options
        self.model = loaded.model.to(options.device).eval()

    @torch.inference_mode()
    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass; outputs come back as float32 numpy arrays."""
        assert self.model is not None, "prepare() first"
        device = self.options.device
        tensors = {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}
        extra = {"masked_positions": tensors["masked_positions"]} if "masked_positions" in tensors else {}
        outputs = self.model(tensors["input_ids"], tensors["attention_mask"], tensors["token_type_ids"], **extra)
        return {name: out.float().cpu().numpy() for name, out in zip(self.model.output_names, outputs, strict=True)}

    def describe(self) -> dict[str, Any]:
        """Backend facts for metrics.json."""
        return {"backend": self.name, "precision": self.options.precision, "device": self.options.device}
