"""What only the PyTorch runtime takes (beside the options every runtime shares, in `options`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertbench.cliargs import option
from bertbench.runtimes.accepts import CPU_OR_GPU, Accepts, device_kind


@dataclass(frozen=True, kw_only=True)
class TorchOptions:
    """PyTorch eager, optionally compiled."""

    ACCEPTS: ClassVar[Accepts] = Accepts(
        {"fp32": CPU_OR_GPU, "bf16": CPU_OR_GPU, "fp16": ("cuda",), "int8": ("cpu",)},
        quantizations=("dynamic",),
        hints={
            "fp16": "CPU FP16 is refused: use bf16 or fp32 on the CPU",
            "int8": "torch INT8 is dynamic quantization on the CPU; static INT8 and GPUs: --backend onnxruntime",
        },
    )

    compile: bool = option(False, help="torch.compile the model (torch backend)")

    def device_kind(self, device: str) -> str:
        """The kind of device the runtime computes on."""
        return device_kind(device)
