"""Runtime registry: a plain dict from `--backend` name to class."""

from __future__ import annotations

from bertbench.errors import UsageError
from bertbench.runtimes.base import Runtime
from bertbench.runtimes.ort_runtime import OrtRuntime
from bertbench.runtimes.torch_runtime import TorchRuntime

RUNTIMES: dict[str, type] = {"torch": TorchRuntime, "onnxruntime": OrtRuntime}


def create_runtime(name: str) -> Runtime:
    """A new, unprepared runtime for `--backend name`."""
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise UsageError(f"--backend {name}: unknown backend (choose from {', '.join(RUNTIMES)})") from None
