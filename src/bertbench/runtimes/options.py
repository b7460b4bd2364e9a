"""What the user asks of a runtime, and where it runs.

`RuntimeOptions` holds what every backend shares (backend, precision, INT8 mode, per-channel weights) and the
chosen backend's own options (`own`: one small dataclass per backend, next to its implementation). The command line
offers every backend's options; an option of another backend than the chosen one is refused when it is parsed.
Each backend's options class states what it can run (`ACCEPTS`: precisions on which devices, INT8 modes, tasks),
and `check` refuses an impossible combination in one line before anything is loaded: the configs call it when a
command line or a workload case is parsed, and every runtime's `prepare` again. `Placement` (device, threads,
artifact cache, calibration sample) is built once by the job that runs it. Imports nothing heavy, so
`bertbench --help` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.choices import BACKEND_ALIASES, BACKENDS, PRECISIONS, QUANTIZATION_MODES
from bertbench.cliargs import chosen, option
from bertbench.errors import UsageError
from bertbench.hardware import cpu_flags
from bertbench.runtimes.accepts import Accepts
from bertbench.runtimes.null_options import NullOptions
from bertbench.runtimes.openvino_options import OpenVinoOptions
from bertbench.runtimes.ort_options import OrtOptions
from bertbench.runtimes.torch_options import TorchOptions

BackendOptions = TorchOptions | OrtOptions | OpenVinoOptions | NullOptions
# backend -> the class of its own options
BACKEND_OPTIONS: dict[str, type] = {
    "torch": TorchOptions,
    "onnxruntime": OrtOptions,
    "openvino": OpenVinoOptions,
    "null": NullOptions,
}
assert set(BACKEND_OPTIONS) == set(BACKENDS), "choices.BACKENDS and the backend options disagree"


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """The backend, its precision and INT8 settings, and the chosen backend's own options."""

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
    own: BackendOptions = chosen("backend", BACKEND_OPTIONS)  # type: ignore[assignment]
    keep_fp32: tuple[str, ...] = ()  # encoder layers left in FP32 (e.g. "layer.3"), set by the INT8 fallback search

    def __post_init__(self) -> None:
        wanted = BACKEND_OPTIONS[self.backend]
        if self.own is None:
            object.__setattr__(self, "own", wanted())
        elif type(self.own) is not wanted:
            raise UsageError(
                f"--backend {self.backend}: given the options of another backend ({type(self.own).__name__})"
            )

    @property
    def static_int8(self) -> bool:
        """INT8 with calibrated activation ranges (needs a calibration sample of training data)."""
        return self.precision == "int8" and self.quantization == "static"

    @property
    def accepts(self) -> Accepts:
        """What the chosen backend can run."""
        return self.own.ACCEPTS

    def check(self, device: str = "cpu", task: str | None = None, calibration: bool = True) -> None:
        """Refuse, in one line, what the chosen backend cannot run: this precision on this device, this INT8 mode,
        this task, static INT8 without calibration data (`calibration`: whether the command was given some)."""
        backend, precision, accepts = self.backend, self.precision, self.accepts
        kind = self.own.device_kind(device)
        where = accepts.devices.get(precision)
        if where is None:
            offered = ", ".join(accepts.devices)
            raise UsageError(
                f"--backend {backend} --precision {precision}: not offered by {backend}, which runs {offered}"
                + accepts.hint(precision)
            )
        if kind not in where:
            raise UsageError(
                f"--backend {backend} --precision {precision} --device {device}: {backend} runs {precision} on "
                f"{' or '.join(where)} only{accepts.hint(precision)}"
            )
        needed = accepts.native_on_cpu.get(precision)
        if kind == "cpu" and needed and not cpu_flags() & set(needed):
            raise UsageError(
                f"--backend {backend} --precision {precision}: this CPU has no native {precision.upper()} "
                f"({' or '.join(needed)} in /proc/cpuinfo), where {backend} would compute in FP32 and call it "
                f"{precision}; use torch, which says when it emulates {precision}"
            )
        if precision == "int8" and self.quantization not in accepts.quantizations:
            raise UsageError(
                f"--backend {backend} --precision int8 --quantization {self.quantization}: {backend} offers "
                f"{' or '.join(accepts.quantizations)} INT8 only{accepts.hint('int8')}"
            )
        if task is not None and accepts.tasks is not None and task not in accepts.tasks:
            raise UsageError(f"--backend {backend}: runs {', '.join(accepts.tasks)} models, not {task} (use torch)")
        if self.static_int8 and not calibration:
            raise UsageError(
                "--quantization static needs --calibration-data (a training file, never the evaluated one)"
            )


@dataclass(frozen=True)
class Placement:
    """Where a prepared runtime computes: device, threads, artifact cache, and the calibration sample for static
    INT8 (rows of a training file, never the evaluated one). Built once by the job."""

    device: str = "cpu"
    threads: int = 1
    cache_dir: Path | None = None
    calibration: Any = field(default=None, compare=False)
