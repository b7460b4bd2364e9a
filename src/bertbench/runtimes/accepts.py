"""What a backend can run, stated by its options class (`ACCEPTS`) and checked before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

CPU_OR_GPU = ("cpu", "cuda")


def device_kind(device: str) -> str:
    """`cpu` or `cuda` for a --device value (`cuda:1` is a cuda device)."""
    return device.split(":", 1)[0]


@dataclass(frozen=True)
class Accepts:
    """A backend's offer: the devices each precision runs on, its INT8 modes, the tasks whose models it runs (None:
    every task), and one hint per precision that a refusal adds (what to do instead)."""

    devices: dict[str, tuple[str, ...]]
    quantizations: tuple[str, ...] = ("dynamic", "static")
    tasks: tuple[str, ...] | None = None
    hints: dict[str, str] = field(default_factory=dict)
    # precision -> CPU flags of which one must be present for it to run natively on a CPU (else it is refused)
    native_on_cpu: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def hint(self, precision: str) -> str:
        """`; what to do instead` for a refusal at this precision, or nothing."""
        text = self.hints.get(precision) or self.hints.get("*")
        return f"; {text}" if text else ""
