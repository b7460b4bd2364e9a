"""A fleet's results side by side: several stores read as one (files, or folders of them) and stores from other
machines folded into one by run uid, so that no run is counted twice however often stores are merged or read.

A machine is named by what its runs recorded about it (hostname, CPU model, cores), never by a store's file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.errors import UsageError
from bertbench.results.store import ResultsStore, StoredRun, default_store_path

STORE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


def store_files(given: tuple[Path, ...] | list[Path]) -> list[Path]:
    """The store files named: a file as it is, a folder as the stores directly in it (sorted); none given is
    the default store. The same file named twice (relative and absolute) counts once."""
    if not given:
        return [default_store_path()]
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in STORE_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"{path}: a folder with no results store in it (*{', *'.join(STORE_SUFFIXES)})")
            files += found
        else:
            files.append(path)
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def open_stores(given: tuple[Path, ...] | list[Path]) -> list[ResultsStore]:
    """Every named store, opened read-only (never migrated or changed; a missing, empty or foreign one is one line
    naming it)."""
    return [ResultsStore(path, read_only=True) for path in store_files(given)]


def read_runs(stores: list[ResultsStore]) -> list[StoredRun]:
    """The rows of all stores as one list, oldest first; a run held by several stores (merged before) once."""
    seen: set[str] = set()
    runs: list[StoredRun] = []
    for store in stores:
        for run in store.runs():
            if run.uid not in seen:
                seen.add(run.uid)
                runs.append(run)
    if len(stores) > 1:  # one store is already in the order its rows were written
        runs.sort(key=lambda run: run.started_at or "")
    return runs


def machine(run: dict[str, Any]) -> str:
    """The machine a flat run was made on, as its environment record says (its hostname)."""
    return str(run.get("hostname") or "unknown host")


def machines(runs: list[dict[str, Any]]) -> list[str]:
    """The machines of these runs, in order of first appearance."""
    return list(dict.fromkeys(machine(run) for run in runs))


@dataclass
class MergeCount:
    """What one merge did: rows added, rows the destination had already, rows still running (left for later)."""

    added: int = 0
    present: int = 0
    running: int = 0


def merge_into(destination: ResultsStore, sources: list[ResultsStore]) -> MergeCount:
    """Copy every ended row of `sources` into `destination` as it is (uid, times, config, metrics, environment);
    a uid the destination has is skipped, and a row still running is left until it ends (merge again then)."""
    count = MergeCount()
    for source in sources:
        if source.path.resolve() == destination.path.resolve():
            raise UsageError(f"{source.path}: is the destination store itself (--store); nothing to merge")
    # oldest first across all sources: a store's row order is its history (what "earlier run" means to the report)
    for run in sorted((r for s in sources for r in s.runs()), key=lambda r: r.started_at or ""):
        if run.status == "running":
            count.running += 1
        elif destination.insert_copy(run):
            count.added += 1
        else:
            count.present += 1
    return count
