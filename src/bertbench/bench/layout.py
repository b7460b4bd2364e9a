"""Where the instances of a performance test run: how many, and the cores each is pinned to."""

from __future__ import annotations

from dataclasses import dataclass

from bertbench.errors import UsageError
from bertbench.hardware import allowed_cores


@dataclass(frozen=True)
class Layout:
    """Instances and the cores each is pinned to."""

    instances: int
    cores_per_instance: int
    threads: int
    cores: list[list[int]]
    oversubscribed: bool

    @property
    def total_threads(self) -> int:
        """Threads of all instances together (what one process would get for the same cores)."""
        return self.threads * self.instances


def plan_layout(
    instances: int | str, cores_per_instance: int | None, threads: int | None, oversubscribe: bool
) -> Layout:
    """--instances (a count, or "auto" = cores // --cores-per-instance) and --cores-per-instance on the cores this
    process may use; more than exist needs --oversubscribe (cores are then shared round-robin)."""
    allowed = allowed_cores()
    if instances == "auto":
        per = cores_per_instance or 1
        count = max(1, len(allowed) // per)
    else:
        count = int(instances)
        per = cores_per_instance or max(1, len(allowed) // count)
    wanted = count * per
    if wanted > len(allowed) and not oversubscribe:
        raise UsageError(
            f"--instances {count} --cores-per-instance {per} needs {wanted} cores, this process may use "
            f"{len(allowed)} ({','.join(map(str, allowed))}); pass --oversubscribe to share cores"
        )
    cores = [[allowed[(i * per + j) % len(allowed)] for j in range(per)] for i in range(count)]
    return Layout(count, per, threads or per, cores, wanted > len(allowed))
