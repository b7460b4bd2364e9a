"""What a result depends on besides its config: code version, library versions, machine."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bertbench.hardware import available_cores, cpu_model, isa_flags

LIBRARIES = (
    "torch",
    "numpy",
    "tokenizers",
    "safetensors",
    "transformers",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "mlcommons-loadgen",
)


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
        key = f"{name.replace('-', '_')}_version"
        try:
            versions[key] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


@functools.cache
def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in sysfs; None where the OS does not say."""
    cores = set()
    for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*"):
        try:
            package = (cpu / "topology" / "physical_package_id").read_text().strip()
            core = (cpu / "topology" / "core_id").read_text().strip()
        except OSError:
            continue
        cores.add((package, core))
    return len(cores) or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


@functools.cache
def _gpu() -> dict[str, Any]:
    """GPU model and driver from nvidia-smi, when there is one (nothing is imported)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    rows = [line.split(", ") for line in out.splitlines() if line.strip()]
    if not rows:
        return {"gpu_model": None, "gpu_driver": None, "gpu_count": 0}
    return {"gpu_model": rows[0][0], "gpu_driver": rows[0][-1], "gpu_count": len(rows)}


def machine() -> dict[str, Any]:
    """Host facts for a run record."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "cores_available": available_cores(),
        "memory_gib": _memory_gib(),
        **isa_flags(),
        **_gpu(),
    }


def environment() -> dict[str, Any]:
    """Everything a record needs besides config and metrics: git SHA, library versions, machine."""
    return {"git_sha": git_sha(), **library_versions(), **machine()}


NOT_ENVIRONMENT = ("schema_version", "data_version")  # `*_version` keys that describe a record or data, not a stack


@functools.cache
def environment_keys() -> frozenset[str]:
    """The keys environment() writes (the same on every machine: absent facts are None, not missing)."""
    return frozenset(environment())


def is_environment_key(key: str) -> bool:
    """Whether a flat record's key belongs to its environment section (also a library version of another
    bertbench's record)."""
    return key in environment_keys() or (key.endswith("_version") and key not in NOT_ENVIRONMENT)
