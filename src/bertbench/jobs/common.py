"""Set-up shared by the jobs: threads, output directories, precision checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from bertbench.errors import BertbenchError
from bertbench.hardware import available_cores, has_native_bf16
from bertbench.results.console import warn
from bertbench.training.distributed import DistEnv


def resolve_threads(requested: int | None) -> int:
    """--threads, else OMP_NUM_THREADS (torchrun sets it per rank), else the cores this process may use."""
    if requested is not None:
        if requested < 1:
            raise BertbenchError(f"--threads {requested}: must be at least 1")
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cores()


def configure_threads(requested: int | None) -> int:
    """Set torch's intra-op thread count and return it."""
    threads = resolve_threads(requested)
    torch.set_num_threads(threads)
    return threads


def prepare_output_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create DIR; refuse a non-empty one unless --overwrite (checkpoints are then cleared) or --resume."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BertbenchError(f"{path}: output path exists and is not a directory")
    if path.exists() and any(path.iterdir()) and not (overwrite or resume):
        raise BertbenchError(f"{path}: output directory is not empty (pass --overwrite to replace its results)")
    if overwrite and not resume:
        # Stale checkpoints of an earlier run must never be resumed into a new one.
        shutil.rmtree(path / "checkpoints", ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_training_precision(amp: str, device: str) -> None:
    """FP16 mixed precision needs CUDA (loss scaling on GPU); BF16 on a CPU runs but is emulated and slow."""
    if amp == "fp16" and not device.startswith("cuda"):
        raise BertbenchError("--precision fp16: mixed-precision training in FP16 needs a CUDA device")
    if amp == "bf16" and not device.startswith("cuda") and not has_native_bf16():
        warn("--precision bf16 on this CPU: no native BF16, so autocast is emulated and slow")


def check_output_dir(path: Path, dist: DistEnv, overwrite: bool, resume: bool) -> Path:
    """prepare_output_dir for a (possibly distributed) training job: every rank checks, rank 0 acts."""
    if path.exists() and path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise BertbenchError(f"{path}: output directory is not empty (pass --resume to continue or --overwrite)")
    dist.barrier()
    if dist.is_main:
        prepare_output_dir(path, overwrite=overwrite, resume=resume)
    dist.barrier()
    return path
