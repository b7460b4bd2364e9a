"""metrics.json: one flat record per run (config, metrics, environment), written atomically."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from bertbench.io_utils import atomic_write_json
from bertbench.results.environment import git_sha, library_versions, machine

SCHEMA_VERSION = 1


def build_record(config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """Merge config, metrics and environment into the flat dict that metrics.json holds."""
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_sha": git_sha(),
    }
    record.update(config)
    record.update(metrics)
    record.update(library_versions())
    record.update(machine())
    return record


def write_metrics(output_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write DIR/metrics.json atomically and return its path."""
    path = Path(output_dir) / "metrics.json"
    atomic_write_json(path, record)
    return path
