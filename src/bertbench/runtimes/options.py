"""What the user asks of a runtime, and where it runs.

`RuntimeOptions` holds what every backend shares (backend, precision, INT8 mode, per-channel weights) and one small
options dataclass per backend, next to its implementation (`torch_options`, `ort_options`, `openvino_options`): the
command line is generated from all of them, and an option of another backend than the chosen one is refused here,
once. `Placement` (device, threads, artifact cache, calibration sample) is built once by the job that runs it.
Imports nothing heavy, so `bertbench --help` stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.choices import BACKEND_ALIASES, BACKENDS, PRECISIONS, QUANTIZATION_MODES
from bertbench.cliargs import flag_of, nested, option
from bertbench.errors import UsageError
from bertbench.runtimes.openvino_options import OpenVinoOptions
from bertbench.runtimes.ort_options import OrtOptions
from bertbench.runtimes.torch_options import TorchOptions


@dataclass(frozen=True, kw_only=True)
class NullOptions:
    """The null runtime takes nothing of its own."""


# backend -> the field of RuntimeOptions that holds its own options
BACKEND_FIELDS = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino", "null": "null"}
assert set(BACKEND_FIELDS) == set(BACKENDS), "choices.BACKENDS and the backend options disagree"


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """The backend, its precision and INT8 settings, and each backend's own options."""

    backend: str = option("torch", help="inference runtime", choices=BACKENDS, normalise=BACKEND_ALIASES)
    precision: str = option(
        "fp32", help="fp32, bf16 (emulated on CPUs without it, and said so), fp16 (CUDA), int8", choices=PRECISIONS
    )
    quantization: str = option(
        "dynamic", help="INT8 mode (static: QDQ on onnxruntime, NNCF on openvino)", choices=QUANTIZATION_MODES
    )
    # INT8 weights: per-channel scales over the full 8-bit range. Measured on the fine-tuned MiniLM (SQuAD dev,
    # ORT dynamic, AVX2 without VNNI): F1 -0.7 against FP32, where per-tensor 7-bit (reduce_range) lost 8.4.
    per_channel: bool = option(True, help="per-channel INT8 weight scales")
    torch: TorchOptions = nested(TorchOptions)
    onnxruntime: OrtOptions = nested(OrtOptions)
    openvino: OpenVinoOptions = nested(OpenVinoOptions)
    null: NullOptions = nested(NullOptions)
    keep_fp32: tuple[str, ...] = ()  # encoder layers left in FP32 (e.g. "layer.3"), set by the INT8 fallback search

    def __post_init__(self) -> None:
        self._refuse_other_backends_options()

    @property
    def static_int8(self) -> bool:
        """INT8 with calibrated activation ranges (needs a calibration sample of training data)."""
        return self.precision == "int8" and self.quantization == "static"

    def own(self) -> Any:
        """The chosen backend's own options."""
        return getattr(self, BACKEND_FIELDS[self.backend])

    def _refuse_other_backends_options(self) -> None:
        """An option set away from its default that the chosen backend does not take is an error, not ignored."""
        own = _names(self.own())
        for backend, name in BACKEND_FIELDS.items():
            if backend == self.backend:
                continue
            options = getattr(self, name)
            for item in dataclasses.fields(options):
                if item.name not in own and getattr(options, item.name) != item.default:
                    takers = " or ".join(b for b, n in BACKEND_FIELDS.items() if item.name in _names(getattr(self, n)))
                    raise UsageError(
                        f"{flag_of(item)}: an option of --backend {takers}, not of --backend {self.backend}"
                    )


def _names(options: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(options)}


@dataclass(frozen=True)
class Placement:
    """Where a prepared runtime computes: device, threads, artifact cache, and the calibration sample for static
    INT8 (rows of a training file, never the evaluated one). Built once by the job."""

    device: str = "cpu"
    threads: int = 1
    cache_dir: Path | None = None
    calibration: Any = field(default=None, compare=False)
