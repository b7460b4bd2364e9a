"""The results store: one SQLite row per run of any command, kept across versions.

WAL mode and a busy timeout let several processes write at once (instances, two `run`s); every write is one
short transaction. The schema is versioned with `PRAGMA user_version`; opening an older store applies the
missing migrations in order (never drops a table).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError
from bertbench.results.record import RunRecord, json_safe

STATUSES = ("running", "finished", "failed", "interrupted")
# Each entry upgrades the schema by one version; append, never edit (stores in the field were made by them).
MIGRATIONS: list[str] = [
    # 1: runs with their config, metrics and environment as JSON
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL UNIQUE,
        command TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        git_sha TEXT,
        config TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        environment TEXT NOT NULL DEFAULT '{}',
        output_dir TEXT,
        error TEXT
    );
    """,
    # 2: workload cases (`bertbench run`): which case a row is, its fingerprint, the row a sweep hangs under
    """
    ALTER TABLE runs ADD COLUMN workload TEXT;
    ALTER TABLE runs ADD COLUMN case_name TEXT;
    ALTER TABLE runs ADD COLUMN fingerprint TEXT;
    ALTER TABLE runs ADD COLUMN parent_uid TEXT;
    CREATE INDEX runs_case ON runs (workload, case_name, fingerprint, status);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 120.0


def default_store_path() -> Path:
    """`${XDG_DATA_HOME:-~/.local/share}/bertbench/results.sqlite`."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "bertbench" / "results.sqlite"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(json_safe(value), default=str)


@dataclass
class StoredRun:
    """One row, decoded."""

    uid: str
    command: str
    status: str
    started_at: str
    ended_at: str | None
    git_sha: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    environment: dict[str, Any]
    output_dir: str | None
    error: str | None
    workload: str | None
    case_name: str | None
    fingerprint: str | None
    parent_uid: str | None

    def flat(self) -> dict[str, Any]:
        """Config, metrics and environment in one dict (as metrics.json), plus the row's own facts."""
        flat = {**self.environment, **self.config, **self.metrics}
        flat.update(
            {
                "uid": self.uid,
                "command": self.command,
                "status": self.status,
                "started_at": self.started_at,
                "ended_at": self.ended_at,
                "workload": self.workload,
                "case_name": self.case_name,
                "output_dir": self.output_dir,
            }
        )
        return flat


class ResultsStore:
    """Open (creating or upgrading) the store at `path`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                self._migrate(db)
        except (OSError, sqlite3.Error) as exc:
            raise BertbenchError(f"{self.path}: cannot open the results store ({exc})") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BertbenchError(
                f"{self.path}: store schema {version} is newer than this bertbench understands ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        with self._connect() as db:
            return db.execute("PRAGMA user_version").fetchone()[0]

    # ---- writes ---------------------------------------------------------------------------------------------

    def start(
        self,
        command: str,
        config: dict[str, Any],
        output_dir: str | None = None,
        *,
        uid: str | None = None,
        workload: str | None = None,
        case_name: str | None = None,
        fingerprint: str | None = None,
    ) -> str:
        """A new row with status `running`; returns its uid."""
        uid = uid or uuid.uuid4().hex
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (uid, command, status, started_at, config, output_dir, workload, case_name, "
                "fingerprint) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (uid, command, _now(), _json(config), output_dir, workload, case_name, fingerprint),
            )
        return uid

    def finish(self, uid: str, records: list[RunRecord], output_dir: str | None = None) -> None:
        """Mark the row finished with the first record; further records (a sweep) become rows of their own."""
        if not records:
            self.end(uid, "finished")
            return
        first, *rest = records
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT workload, case_name, fingerprint FROM runs WHERE uid = ?", (uid,)).fetchone()
            workload, case_name, fingerprint = row if row else (None, None, None)
            db.execute(
                "UPDATE runs SET status = 'finished', command = ?, ended_at = ?, git_sha = ?, config = ?, metrics = ?, "
                "environment = ?, output_dir = COALESCE(?, output_dir) WHERE uid = ?",
                (
                    first.command,  # what the record says it is (`bench --roof` records `bench-roof`)
                    _now(),
                    first.environment.get("git_sha"),
                    _json(first.config),
                    _json(first.metrics),
                    _json(first.environment),
                    output_dir,
                    uid,
                ),
            )
            for record in rest:
                db.execute(
                    "INSERT INTO runs (uid, command, status, started_at, ended_at, git_sha, config, metrics, "
                    "environment, output_dir, workload, case_name, fingerprint, parent_uid) "
                    "VALUES (?, ?, 'finished', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        record.command,
                        record.timestamp,
                        _now(),
                        record.environment.get("git_sha"),
                        _json(record.config),
                        _json(record.metrics),
                        _json(record.environment),
                        record.config.get("output_dir", output_dir),
                        workload,
                        case_name,
                        fingerprint,
                        uid,
                    ),
                )
            db.execute("COMMIT")

    def end(self, uid: str, status: str, error: str | None = None) -> None:
        """Set a row's final status (failed, interrupted, or finished without a record)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE uid = ?", (status, _now(), error, uid)
            )

    def add(self, record: RunRecord, output_dir: str | None = None) -> str:
        """Import one finished record (e.g. an old metrics.json)."""
        uid = self.start(record.command, record.config, output_dir)
        self.finish(uid, [record], output_dir)
        return uid

    # ---- reads ----------------------------------------------------------------------------------------------

    def runs(self, where: str = "", params: tuple[Any, ...] = ()) -> list[StoredRun]:
        """Rows matching an SQL condition on the table's columns, oldest first."""
        sql = "SELECT uid, command, status, started_at, ended_at, git_sha, config, metrics, environment, output_dir, "
        sql += "error, workload, case_name, fingerprint, parent_uid FROM runs"
        if where:
            sql += f" WHERE {where}"
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY id", params).fetchall()
        return [
            StoredRun(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), json.loads(r[7]), json.loads(r[8]), *r[9:])
            for r in rows
        ]

    def get(self, uid: str) -> StoredRun | None:
        """One row by uid."""
        found = self.runs("uid = ?", (uid,))
        return found[0] if found else None

    def finished_case(self, workload: str, case_name: str, fingerprint: str) -> StoredRun | None:
        """The newest finished row of this workload case with this fingerprint."""
        found = self.runs(
            "workload = ? AND case_name = ? AND fingerprint = ? AND status = 'finished' AND parent_uid IS NULL",
            (workload, case_name, fingerprint),
        )
        return found[-1] if found else None
