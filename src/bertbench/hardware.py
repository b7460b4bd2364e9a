"""What this machine is: CPU model, feature flags, cores this process may use (read from /proc/cpuinfo once), and
how many threads a computation gets. Imports no torch at the top (workers set their environment first)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from bertbench.errors import BertbenchError

# The ISA features that decide which kernels a BERT run gets (recorded with every result).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512fp16")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # end of the first processor
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor ("avx2", "avx512_vnni", …)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's marketing name, or the platform's processor string."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown"


def cpu_identity() -> dict[str, str | None]:
    """What tells one CPU model from another: its name, family, model number and stepping."""
    fields = _cpuinfo()
    return {
        "model_name": cpu_model(),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "stepping": fields.get("stepping"),
    }


def has_native_bf16() -> bool:
    """BF16 arithmetic in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def allowed_cores() -> list[int]:
    """The ids of the CPU cores this process may run on (its affinity mask), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many CPU cores this process may run on (affinity mask), not the machine's total."""
    return len(allowed_cores())


def isa_flags() -> dict[str, bool]:
    """`isa_<flag>` for the features that matter to BERT kernels."""
    flags = cpu_flags()
    return {f"isa_{name}": name in flags for name in ISA_FLAGS}


def resolve_threads(requested: int | None) -> int:
    """--threads, else OMP_NUM_THREADS (torchrun sets it per rank), else the cores this process may use."""
    if requested is not None:
        if requested < 1:
            raise BertbenchError(f"--threads {requested}: must be at least 1")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cores()


def configure_threads(requested: int | None) -> int:
    """Set torch's intra-op thread count (resolve_threads) and return it."""
    import torch

    threads = resolve_threads(requested)
    torch.set_num_threads(threads)
    return threads
