"""Names a user gives (workloads, cases, systems, submitters) are identifiers, never paths: one pattern, a bounded
length, reserved names refused, unique after normalisation (case folded: some file systems do), and every path a
command writes under a root checked to stay there."""

from __future__ import annotations

import re
from pathlib import Path

MAX_NAME_LENGTH = 120
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What `run` writes beside the case folders of a workload: a case may not be named like it.
RESERVED = frozenset({"logs", "report.html"})
NAME_RULE = f"letters, digits, '-', '_' and '.', not starting with '.' or a sign, at most {MAX_NAME_LENGTH} characters"


def name_problem(name: object) -> str | None:
    """Why `name` cannot name a workload or a case (None when it can)."""
    if not isinstance(name, str) or not name:
        return "a name must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters, more than {MAX_NAME_LENGTH}"
    if not NAME_PATTERN.fullmatch(name):
        return f"not an identifier ({NAME_RULE})"
    if normalised(name) in RESERVED:
        return f"reserved: `run` writes {name} itself"
    return None


def normalised(name: str) -> str:
    """The form two names must not share: case folded, as on case-insensitive file systems."""
    return name.casefold()


def inside(root: Path, path: Path) -> Path:
    """`path` resolved, when it lies under `root` (resolved); ValueError otherwise."""
    resolved, base = path.resolve(), root.resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"{path} is not under {root}")
    return resolved
