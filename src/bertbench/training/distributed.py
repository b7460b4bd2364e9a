"""torch.distributed set-up from torchrun's environment (gloo on CPU, NCCL on GPU); single-process otherwise.

Across nodes (torchrun --nnodes N with c10d rendezvous) gloo must talk over the interface that reaches the
rendezvous host: unless GLOO_SOCKET_IFNAME says otherwise it is chosen from the address torchrun gives (MASTER_ADDR),
since gloo's own guess (the address the hostname resolves to) is often loopback or a container's private net."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
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
    nodes: int = 1  # torchrun's node groups (GROUP_WORLD_SIZE)
    processes_per_node: int = 1  # LOCAL_WORLD_SIZE
    interface: str | None = None  # the network interface gloo uses across nodes

    def describe(self) -> dict[str, Any]:
        """The job's shape for the run record."""
        shape: dict[str, Any] = {
            "world_size": self.world_size,
            "nodes": self.nodes,
            "processes_per_node": self.processes_per_node,
        }
        if self.interface:
            shape["gloo_interface"] = self.interface
        return shape

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


def interface_towards(host: str) -> str | None:
    """The name of the network interface this machine uses to reach `host` (None when it cannot be told)."""
    import psutil

    try:
        address = ipaddress.ip_address(socket.gethostbyname(host))
        if address.is_loopback:
            local = address
        else:  # the kernel's route: a UDP "connection" sends nothing, but picks the source address
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((str(address), 9))
                local = ipaddress.ip_address(probe.getsockname()[0])
    except OSError:
        return None
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and ipaddress.ip_address(a.address) == local for a in addresses):
            return name
    return None


def init_distributed(device: str = "cpu", timeout_s: float = 120.0) -> DistEnv:
    """Join the process group that torchrun describes in the environment; a no-op without torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    interface = os.environ.get("GLOO_SOCKET_IFNAME")
    if not device.startswith("cuda") and nodes > 1 and not interface and os.environ.get("MASTER_ADDR"):
        interface = interface_towards(os.environ["MASTER_ADDR"])
        if interface:
            os.environ["GLOO_SOCKET_IFNAME"] = interface  # read by gloo when the group is made, just below
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local_rank, device, nodes, per_node, interface if nodes > 1 else None)


def shutdown_distributed() -> None:
    """Leave the process group cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
