"""What only the null runtime takes: nothing (it answers with zeros, measuring the harness)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bertbench.choices import PRECISIONS
from bertbench.runtimes.accepts import CPU_OR_GPU, Accepts, device_kind


@dataclass(frozen=True, kw_only=True)
class NullOptions:
    """The null runtime takes nothing of its own; it "runs" every precision anywhere (it computes nothing)."""

    ACCEPTS: ClassVar[Accepts] = Accepts(dict.fromkeys(PRECISIONS, CPU_OR_GPU))

    def device_kind(self, device: str) -> str:
        """The kind of device the runtime computes on."""
        return device_kind(device)
