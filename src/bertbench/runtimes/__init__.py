"""Runtimes: prepare a model once, then infer(dict of numpy) -> dict of numpy. Runtimes know no timing."""

from bertbench.runtimes.base import Runtime, RuntimeOptions
from bertbench.runtimes.registry import RUNTIMES, create_runtime

__all__ = ["RUNTIMES", "Runtime", "RuntimeOptions", "create_runtime"]
