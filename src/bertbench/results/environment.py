"""What a result depends on besides its config: code version, library versions, machine."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import shutil
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


CPU_SYSFS = "/sys/devices/system/cpu"


@functools.cache
def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in sysfs; None where the OS does not say."""
    cores = set()
    for cpu in Path(CPU_SYSFS).glob("cpu[0-9]*"):
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


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@functools.cache
def _sockets() -> int | None:
    """Distinct CPU packages in sysfs."""
    packages = {_read(cpu / "topology" / "physical_package_id") for cpu in Path(CPU_SYSFS).glob("cpu[0-9]*")}
    packages.discard(None)
    return len(packages) or None


@functools.cache
def _cpu_max_mhz() -> float | None:
    """The CPU's highest clock: cpufreq's, else the clock /proc/cpuinfo reports (a VM often has no cpufreq)."""
    khz = _read(Path(CPU_SYSFS) / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if khz and khz.isdigit():
        return int(khz) / 1000
    for line in (_read(Path("/proc/cpuinfo")) or "").splitlines():
        if line.startswith("cpu MHz"):
            try:
                return round(float(line.split(":", 1)[1]), 1)
            except ValueError:
                return None
    return None


@functools.cache
def _cpu_caches() -> str | None:
    """cpu0's caches from sysfs, e.g. "L1d 32K, L1i 32K, L2 1024K, L3 32768K" (per core, L3 shared)."""
    caches = []
    for index in sorted(Path(CPU_SYSFS).glob("cpu0/cache/index[0-9]*")):
        level, kind, size = (_read(index / name) for name in ("level", "type", "size"))
        if level and size:
            suffix = {"Data": "d", "Instruction": "i"}.get(kind or "", "")
            caches.append(f"L{level}{suffix} {size}")
    return ", ".join(caches) or None


@functools.cache
def _root_storage() -> dict[str, Any]:
    """The file system this runs from: its capacity and whether its block device spins (sysfs)."""
    facts: dict[str, Any] = {"storage_gib": None, "storage_type": None}
    with contextlib.suppress(OSError):
        facts["storage_gib"] = round(shutil.disk_usage("/").total / 2**30, 1)
    device = None
    for line in (_read(Path("/proc/mounts")) or "").splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[1] == "/" and parts[0].startswith("/dev/"):
            device = Path(parts[0]).name
    if device:
        for candidate in (device, device.rstrip("0123456789"), device.rsplit("p", 1)[0]):
            rotational = _read(Path("/sys/block") / candidate / "queue" / "rotational")
            if rotational in ("0", "1"):
                # the kernel's word (a virtual disk often says rotational whatever backs it)
                facts["storage_type"] = f"{'rotational' if rotational == '1' else 'non-rotational (SSD)'} block device"
                break
    return facts


def _networking() -> dict[str, Any]:
    """The network interfaces that are up (loopback aside), with their speeds as the kernel reports them."""
    import psutil

    try:
        stats = psutil.net_if_stats()
    except OSError:
        return {"network_interfaces": None, "network_interface_count": None}
    up = {name: stat for name, stat in sorted(stats.items()) if stat.isup and name != "lo"}
    names = [f"{name} ({stat.speed} Mb/s)" if stat.speed else name for name, stat in up.items()]
    return {"network_interfaces": ", ".join(names) or None, "network_interface_count": len(up)}


def machine() -> dict[str, Any]:
    """Host facts for a run record (what MLPerf's system description asks, where the machine can tell it)."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "cpu_sockets": _sockets(),
        "cpu_max_mhz": _cpu_max_mhz(),
        "cpu_caches": _cpu_caches(),
        "cores_available": available_cores(),
        "memory_gib": _memory_gib(),
        **_root_storage(),
        **_networking(),
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
