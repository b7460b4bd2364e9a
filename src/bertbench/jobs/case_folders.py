"""A case folder has one owner. `run` marks each folder it makes with the case's identity (workload, case,
fingerprint) and only ever resumes or replaces a folder that carries its own mark: a folder of another case, of
another workload, or one `run` did not make is refused with its path, before any case runs."""

from __future__ import annotations

import json
from pathlib import Path

from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json
from bertbench.jobs.common import CASE_MARK


def case_mark(directory: Path) -> dict | None:
    """The identity `run` wrote into a case folder (None when there is none, or it cannot be read)."""
    try:
        mark = json.loads((directory / CASE_MARK).read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) else None


def held_files(directory: Path) -> list[Path]:
    """What a folder holds besides the mark (nothing for a folder that does not exist)."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name != CASE_MARK]


def check_owner(directory: Path, workload: str, case: str) -> None:
    """Refuse a folder that is not empty and not marked as this case's."""
    if directory.exists() and not directory.is_dir():
        raise BertbenchError(f"{directory}: the folder of case {case} is a file; move it away")
    if not held_files(directory):
        return
    mark = case_mark(directory)
    if mark is None or mark.get("workload") != workload or mark.get("case") != case:
        owner = f"case {mark.get('case')} of workload {mark.get('workload')}" if mark else "no bertbench run"
        raise BertbenchError(
            f"{directory}: holds files of {owner}, not of case {case} of workload {workload}; move them away or "
            "choose another --output-root"
        )


def claim(directory: Path, workload: str, case: str, fingerprint: str) -> None:
    """Make the folder (if needed) and mark it as this case's."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / CASE_MARK, {"workload": workload, "case": case, "fingerprint": fingerprint})
