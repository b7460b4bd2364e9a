"""torch.distributed set-up from torchrun's environment (gloo on CPU, NCCL on GPU); single-process otherwise."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs and saves."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op when single-process)."""
        if self.distributed:
            dist.barrier()

    def sum(self, value: float) -> float:
        """Sum a float over ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def main_first(self, build: Callable[[], T]) -> T:
        """Run `build` on rank 0 first (it fills the caches), then on the other ranks (they read them)."""
        if self.is_main:
            result = build()
        self.barrier()
        if not self.is_main:
            result = build()
        self.barrier()
        return result

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def init_distributed(device: str = "cpu", timeout_s: float = 120.0) -> DistEnv:
    """Join the process group that torchrun describes in the environment; a no-op without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local_rank, device)


def shutdown_distributed() -> None:
    """Leave the process group cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
