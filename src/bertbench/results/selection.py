"""Which stored runs a reading command looks at: statuses, KEY=VALUE conditions (compared as text), the newest N;
and the published KPIs of the pages bertbench reproduces."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from bertbench.errors import UsageError
from bertbench.results.store import StoredRun


def select(runs: list[StoredRun], where: list[str], last: int | None, statuses: tuple[str, ...]) -> list[dict]:
    """Flat runs with one of `statuses` matching every KEY=VALUE of `where` (compared as text); the newest
    `last` of them."""
    conditions = []
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where {item}: expected KEY=VALUE (e.g. precision=int8)")
        conditions.append((key, value))
    chosen = []
    for run in runs:
        if run.status not in statuses:
            continue
        flat = run.flat()
        if all(as_text(flat.get(key)) == value for key, value in conditions):
            chosen.append(flat)
    return chosen[-last:] if last else chosen


def as_text(value: Any) -> str:
    """A value as a --where condition spells it (booleans lower-case, nothing as the empty text)."""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def references() -> list[dict[str, Any]]:
    """The published KPIs of the pages we reproduce (their numbers, with their sources)."""
    text = (resources.files("bertbench.results") / "references.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)
