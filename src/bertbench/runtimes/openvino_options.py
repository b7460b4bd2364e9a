"""What only the OpenVINO backend takes (beside the options every runtime shares, in `options`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertbench.cliargs import WRITES, option
from bertbench.runtimes.accepts import Accepts, device_kind
from bertbench.tasks.registry import SERVED_TASKS


@dataclass(frozen=True, kw_only=True)
class OpenVinoOptions:
    """NNCF's overflow fix (ORT's `reduce_range` under the same flag) and where to export the IR."""

    ACCEPTS: ClassVar[Accepts] = Accepts(
        {"fp32": ("cpu",), "bf16": ("cpu",), "int8": ("cpu",)},
        quantizations=("static",),
        tasks=SERVED_TASKS,
        hints={
            "int8": "NNCF post-training quantization: add --quantization static --calibration-data TRAINING_FILE",
            "*": "use torch or onnxruntime for other precisions and on a GPU",
        },
        # OpenVINO's CPU plugin computes in BF16 on AVX512-BF16 and AMX, its default precision there
        native_on_cpu={"bf16": ("avx512_bf16", "amx_bf16")},
    )

    reduce_range: bool = option(
        False, help="7-bit INT8 weights (ORT's advice without VNNI; cost 8 F1 on MiniLM SQuAD here)"
    )
    export_dir: Path | None = option(None, help="also write the prepared ONNX/OpenVINO artifact here", role=WRITES)

    def device_kind(self, device: str) -> str:
        """The kind of device the runtime computes on."""
        return device_kind(device)
