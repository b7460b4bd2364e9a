"""Runtime registry: `--backend` name -> the class implementing it (imported on first use, so that a torch run
never pays for importing onnx and onnxruntime, and parsing a command line imports neither)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bertbench.choices import BACKENDS
from bertbench.errors import UsageError

if TYPE_CHECKING:
    from bertbench.runtimes.base import Runtime

RUNTIMES: dict[str, str] = {
    "torch": "bertbench.runtimes.torch_runtime:TorchRuntime",
    "onnxruntime": "bertbench.runtimes.ort_runtime:OrtRuntime",
    "openvino": "bertbench.runtimes.openvino_runtime:OpenVinoRuntime",
    "null": "bertbench.runtimes.null_runtime:NullRuntime",
}
assert set(RUNTIMES) == set(BACKENDS), "choices.BACKENDS and the runtime registry disagree"


def create_runtime(name: str) -> Runtime:
    """A new, unprepared runtime for `--backend name`."""
    if name not in RUNTIMES:
        raise UsageError(f"--backend {name}: unknown backend (choose from {', '.join(RUNTIMES)})")
    module, cls = RUNTIMES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
