"""RunRecord: one run's command, config, metrics and environment; flattened into metrics.json.

The flat file is the contract other tools read (GUIDE §3). Flattening refuses a key that two sections both
define: a metric must never silently overwrite a config key, nor the environment a metric.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.io_utils import atomic_write_json
from bertbench.results.environment import environment

SCHEMA_VERSION = 1
RUN_UID_ENV = "BERTBENCH_RUN_UID"  # the store row of the command this process runs (set by the recorder or `run`)


def current_run_uid() -> str | None:
    """The store row of the running command, which every record it makes names (`run_uid`)."""
    return os.environ.get(RUN_UID_ENV) or None


class RecordKeyCollision(ValueError):
    """Two sections of a record define the same key (a bug in the code that built it)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def json_safe(value: Any) -> Any:
    """NaN and infinities become None (strict JSON readers reject them), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass
class RunRecord:
    """What one run was asked (config), what it measured (metrics) and where it ran (environment)."""

    command: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=environment)
    timestamp: str = field(default_factory=_now)
    run_uid: str | None = field(default_factory=current_run_uid)
    written_to: Path | None = None  # the directory of its metrics.json, once written

    def flat(self) -> dict[str, Any]:
        """The flat dict metrics.json holds; raises RecordKeyCollision when two sections share a key."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "timestamp": self.timestamp, "command": self.command}
        if self.run_uid:
            out["run_uid"] = self.run_uid
        owner = dict.fromkeys(out, "header")
        for section, values in (("config", self.config), ("metrics", self.metrics), ("environment", self.environment)):
            for key, value in values.items():
                if key in owner:
                    raise RecordKeyCollision(f"record key {key!r} is set by both {owner[key]} and {section}")
                owner[key] = section
                out[key] = value
        return json_safe(out)

    def write(self, output_dir: str | Path) -> Path:
        """Write DIR/metrics.json atomically and return its path."""
        path = Path(output_dir) / "metrics.json"
        atomic_write_json(path, self.flat())
        self.written_to = Path(output_dir).resolve()  # the store keeps where it lies, from wherever it is read
        return path

    def to_dict(self) -> dict[str, Any]:
        """The record's sections as JSON-ready data (a pending store write)."""
        return json_safe(
            {
                "command": self.command,
                "config": self.config,
                "metrics": self.metrics,
                "environment": self.environment,
                "timestamp": self.timestamp,
                "run_uid": self.run_uid,
                "written_to": str(self.written_to) if self.written_to else None,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The record to_dict() wrote."""
        written = data.get("written_to")
        return cls(
            str(data["command"]),
            dict(data["config"]),
            dict(data["metrics"]),
            dict(data["environment"]),
            str(data["timestamp"]),
            data.get("run_uid"),
            Path(written) if written else None,
        )
