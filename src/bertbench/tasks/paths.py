"""Data-file arguments: a task reads one file, or (masked LM) several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bertbench.errors import BertbenchError


def single_path(paths: str | Path | Sequence[str | Path]) -> Path:
    """The one file a task that reads a single file was given."""
    if isinstance(paths, str | Path):
        return Path(paths)
    if len(paths) != 1:
        raise BertbenchError(f"this task reads one data file, got {len(paths)}: {', '.join(map(str, paths))}")
    return Path(paths[0])


def path_list(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """One or several files as a list."""
    return [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
