"""Where bertbench keeps what outlives a command when no option says otherwise."""

from __future__ import annotations

import os
from pathlib import Path


def default_store_path() -> Path:
    """The results store when --store is not given: `${XDG_DATA_HOME:-~/.local/share}/bertbench/results.sqlite`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "bertbench" / "results.sqlite"
