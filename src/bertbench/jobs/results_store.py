"""`bertbench results import|merge|push`: bring results into a store (metrics.json files, other machines'
stores, each run once) and log to a tracking server the runs it did not take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertbench.configs import ResultsConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.results.environment import is_environment_key
from bertbench.results.fleet import merge_into, open_stores
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore
from bertbench.results.tracking import TrackingUnavailable, push_row


def run_results(config: ResultsConfig) -> None:
    """`bertbench results import|merge`."""
    if config.action == "push":
        push_results(config)
        return
    if not config.paths:
        raise UsageError(f"results {config.action}: give at least one path")
    if config.action == "merge":
        merge_stores(config)
    else:
        import_results(config)


def push_results(config: ResultsConfig) -> None:
    """`bertbench results push`: log to their tracking server (or --mlflow-uri) the runs it did not take."""
    if config.paths:
        raise UsageError("results push takes no paths (it pushes what the store holds)")
    store = ResultsStore(config.store, create=False)
    pending = store.tracking_pending()
    pushed = 0
    for uid in pending:
        try:
            push_row(store, uid, config.mlflow_uri)
        except TrackingUnavailable as exc:
            raise BertbenchError(f"{exc}; {pushed} of {len(pending)} run(s) pushed, the rest wait") from None
        pushed += 1
    info(f"pushed {pushed} run(s) from {store.path} to MLflow" if pending else "nothing waits to be pushed")


def merge_stores(config: ResultsConfig) -> None:
    """`bertbench results merge STORE…`: other stores' ended runs into this one, each run once (by uid)."""
    sources = open_stores(config.paths)  # before the destination is made: a typo creates nothing
    destination = ResultsStore(config.store)
    count = merge_into(destination, sources)
    left = f"; {count.running} still running, left for a later merge" if count.running else ""
    info(
        f"merged {count.added} run(s) from {len(sources)} store(s) into {destination.path}; "
        f"{count.present} already there{left}"
    )


def import_results(config: ResultsConfig) -> None:
    """`bertbench results import`: every metrics.json under the paths becomes a finished row (once)."""
    store = ResultsStore(config.store)
    rows = store.runs()
    # A run is known by its uid (metrics.json names it: run_uid) or by where its metrics.json lies, resolved, so
    # that DIR and /absolute/DIR are one place.
    known_uids = {r.uid for r in rows} | {r.parent_uid for r in rows if r.parent_uid}
    known = {str(Path(r.output_dir).resolve()) for r in rows if r.output_dir}
    files: list[Path] = []
    for path in config.paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(path.rglob("metrics.json"))
        else:
            raise UsageError(f"{path}: no such file or directory")
    imported = skipped = 0
    for file in files:
        try:
            flat = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            warn(f"{file}: not readable as JSON ({exc}); skipped")
            skipped += 1
            continue
        if not isinstance(flat, dict) or "schema_version" not in flat:
            warn(f"{file}: not a bertbench metrics.json (no schema_version); skipped")
            skipped += 1
            continue
        place = str(file.parent.resolve())
        if place in known or flat.get("run_uid") in known_uids:
            skipped += 1
            continue
        store.add(_record_from_flat(flat), place)
        known.add(place)
        imported += 1
    info(f"imported {imported} run(s) into {store.path}; {skipped} skipped (already there or not bertbench)")


def _record_from_flat(flat: dict[str, Any]) -> RunRecord:
    """A flat metrics.json split back into sections (environment by name; the rest kept as metrics)."""
    environment = {k: v for k, v in flat.items() if is_environment_key(k)}
    header = {"schema_version", "timestamp", "command", "run_uid"}
    metrics = {k: v for k, v in flat.items() if k not in environment and k not in header}
    return RunRecord(
        str(flat.get("command", "unknown")),
        {},
        metrics,
        environment,
        str(flat.get("timestamp", "")),
        flat.get("run_uid"),
    )
