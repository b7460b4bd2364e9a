"""The machine's load around a timed run (the timed prepare is `setup.start_runtime`).

Runtimes never time themselves; everything that reads a clock or the load average lives in `bench/`.
"""

from __future__ import annotations

import os
from typing import Any


def load_average() -> float:
    """1-minute load average (0.0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


class LoadWindow:
    """The load average before and after a timed region: `with LoadWindow() as load: …; load.facts()`."""

    def __enter__(self) -> LoadWindow:
        self.before = load_average()
        self.after = self.before
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = load_average()

    def facts(self) -> dict[str, Any]:
        """`load_avg_before`, `load_avg_after` for the record."""
        return {"load_avg_before": self.before, "load_avg_after": self.after}
