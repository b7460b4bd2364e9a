"""What a result depends on besides its config: code version, library versions, machine, load."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "numpy", "tokenizers", "safetensors", "transformers", "onnx", "onnxruntime")


@functools.cache
def git_sha() -> str:
    """Commit of the bertbench checkout this code runs from (`-dirty` if modified), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def library_versions() -> dict[str, str | None]:
    """`<lib>_version` for the ML stack (None when not installed); read from metadata, nothing imported."""
    versions: dict[str, str | None] = {"python_version": platform.python_version()}
    for name in ("bertbench", *LIBRARIES):
        try:
            versions[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[f"{name}_version"] = None
    return versions


def available_cores() -> int:
    """CPU cores this process may run on (affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> float:
    """1-minute load average (0.0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def machine() -> dict[str, Any]:
    """Host facts for a run record."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_available": available_cores(),
    }


def machine_busy(load_before: float, cores: int) -> bool:
    """True when other work was already running: the 1-minute load exceeded half the available cores."""
    return load_before > 0.5 * cores
