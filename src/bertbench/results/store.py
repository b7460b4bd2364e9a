"""The results store: one SQLite row per run of any command, kept across versions.

WAL mode and a busy timeout let several processes write at once (instances, two `run`s); every write is one
short transaction, retried with backoff past a busy store. The schema is versioned with `PRAGMA user_version`;
opening an older store applies the missing migrations in order (never drops a table).

Nothing strands a result: records that could not be written (the store stayed locked) wait in `STORE.pending/`
and are imported the next time the store is opened; a `running` row whose process is gone (recorded by host, pid
and the process's start time) is marked `interrupted` then too. A damaged, foreign or newer store is one line
naming the file and what to do; one unreadable row is left out with a warning naming its uid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from bertbench.console import warn
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json
from bertbench.lifetime import hostname, start_time, still_running
from bertbench.locations import default_store_path
from bertbench.results.identity import declaration_signature, experiment_id
from bertbench.results.record import RunRecord, json_safe

T = TypeVar("T")

STATUSES = ("running", "finished", "failed", "interrupted")
ROW_COLUMNS = (
    "uid",
    "command",
    "status",
    "started_at",
    "ended_at",
    "git_sha",
    "config",
    "metrics",
    "environment",
    "output_dir",
    "error",
    "workload",
    "case_name",
    "fingerprint",
    "parent_uid",
    "experiment",
)
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
    # 3: the process that holds a running row (host, pid, its start time), so that a dead one is found
    """
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN pid_started TEXT;
    CREATE INDEX runs_status ON runs (status);
    """,
    # 4: the run's place on an MLflow tracking server: {"uri", "parent" (bertbench uid), "run_id" once logged}
    """
    ALTER TABLE runs ADD COLUMN tracking TEXT;
    """,
    # 5: the experiment a run belongs to (results.identity), and the store's own facts (which identity declaration
    # its experiment ids were computed with)
    """
    ALTER TABLE runs ADD COLUMN experiment TEXT;
    CREATE INDEX runs_experiment ON runs (experiment);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
TIMEOUT_ENV = "BERTBENCH_STORE_TIMEOUT_S"  # how long one write waits for a busy store (default 120 s)
WRITE_ATTEMPTS = 3  # each waits the busy timeout; between them a growing pause
PENDING_SUFFIX = ".pending"


class StoreBusy(BertbenchError):
    """The store stayed locked through every attempt."""


def busy_timeout_s() -> float:
    """The busy timeout of one write ($BERTBENCH_STORE_TIMEOUT_S, default 120 s)."""
    try:
        return max(0.01, float(os.environ.get(TIMEOUT_ENV, "120")))
    except ValueError:
        return 120.0


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json(value: Any) -> str:
    return json.dumps(json_safe(value), default=str)


def _record_experiment(record: RunRecord) -> str:
    return _experiment(record.command, record.config, record.metrics, record.environment)


def _experiment(command: str, config: dict[str, Any], metrics: dict[str, Any], environment: dict[str, Any]) -> str:
    """The experiment id of a row's sections (merged as its flat form is)."""
    return experiment_id({**environment, **config, **metrics, "command": command})


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
    experiment: str | None = None

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
                "experiment": self.experiment,
            }
        )
        return flat


class ResultsStore:
    """Open (creating or upgrading) the store at `path`; `create=False` refuses a missing one; `read_only` (a
    store that is only read: report, export, the sources of a merge) opens it as SQLite's read-only URI and never
    writes to it: no migration, no WAL switch, no pending imports, nothing marked; an empty file or one that is not
    a bertbench store is refused untouched."""

    def __init__(self, path: str | Path | None = None, *, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path) if path else default_store_path()
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise BertbenchError(
                f"{self.path}: no results store here (check --store; a store is made by the first eval, bench, "
                "finetune, pretrain or run)"
            )
        if read_only:
            self._check_readable()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                self._check_foreign(db)
                self._check_not_newer(db)
                db.execute("PRAGMA journal_mode=WAL")
                self._migrate(db)
                self._refresh_experiments(db)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        except OSError as exc:
            raise BertbenchError(f"{self.path}: cannot open the results store ({exc})") from None
        self._import_pending()
        self._mark_dead_runs()

    def _damaged(self, exc: sqlite3.Error) -> BertbenchError:
        """One line for a store SQLite cannot use: which file, what is wrong, what to do."""
        if _locked(exc):
            return StoreBusy(f"{self.path}: the results store stayed locked ({exc}); try again when it is free")
        return BertbenchError(
            f"{self.path}: not a readable results store ({exc}); move it aside (a new one is made) or pass "
            "--store with another file"
        )

    def _check_readable(self) -> None:
        """A store opened read-only: a bertbench store of a schema this bertbench reads, or one line."""
        try:
            with self._connect() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                self._columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        if version > SCHEMA_VERSION:
            raise BertbenchError(
                f"{self.path}: store schema {version} is newer than this bertbench understands ({SCHEMA_VERSION}); "
                "upgrade bertbench, or pass --store with another file"
            )
        if "runs" not in tables or version == 0:
            what = f"a SQLite file of another program (tables {', '.join(sorted(tables)[:3])})" if tables else "empty"
            raise BertbenchError(f"{self.path}: {what}, not a bertbench results store; it was left as it was")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            # With no write-ahead log beside it (no writer at work: the last connection folds it back and removes
            # it), the file is read as immutable: nothing created, a read-only folder fine. Else SQLite's read-only
            # mode, which reads the log's transactions too.
            wal = self.path.with_name(self.path.name + "-wal")
            how = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
            uri = f"file:{quote(str(self.path.resolve()))}?{how}"
            db = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s(), isolation_level=None)
        else:
            db = sqlite3.connect(self.path, timeout=busy_timeout_s(), isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def _check_foreign(self, db: sqlite3.Connection) -> None:
        """A SQLite file of another program (tables, but none of ours, and no schema version) is not touched."""
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and tables and "runs" not in tables:
            raise BertbenchError(
                f"{self.path}: a SQLite file of another program (tables {', '.join(sorted(tables)[:3])}), not a "
                "bertbench results store; pass --store with another file"
            )

    def _check_not_newer(self, db: sqlite3.Connection) -> None:
        """A store a newer bertbench wrote is left as it is (not even switched to WAL)."""
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BertbenchError(
                f"{self.path}: store schema {version} is newer than this bertbench understands ({SCHEMA_VERSION}); "
                "upgrade bertbench, or pass --store with another file"
            )

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
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

    def _refresh_experiments(self, db: sqlite3.Connection) -> None:
        """Every row's experiment id, computed again when the identity declaration changed since they were computed
        (a store written before schema 5, or by a bertbench that declared other identity fields)."""
        signature = declaration_signature()
        row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if row is not None and row[0] == signature:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT id, command, config, metrics, environment FROM runs").fetchall()
            for row_id, command, *sections in rows:
                try:
                    config, metrics, environment = (json.loads(text) for text in sections)
                    experiment = _experiment(command, config, metrics, environment)
                except (TypeError, ValueError):
                    experiment = None  # an unreadable row is left out when read (runs())
                db.execute("UPDATE runs SET experiment = ? WHERE id = ?", (experiment, row_id))
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('identity', ?)", (signature,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _write(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run one write transaction, again after a pause when the store stays busy past its timeout."""
        if self.read_only:
            raise ValueError(f"{self.path}: opened read-only")
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._connect() as db:
                    return action(db)
            except sqlite3.Error as exc:
                if not _locked(exc) or attempt == WRITE_ATTEMPTS - 1:
                    raise self._damaged(exc) from None
                time.sleep(min(30.0, busy_timeout_s()) * (attempt + 1))
        raise AssertionError("unreachable")

    def _read(self, action: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with self._connect() as db:
                return action(db)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None

    # ---- results that could not be written, and runs whose process is gone -------------------------------------

    @property
    def pending_dir(self) -> Path:
        """Where records wait that could not be written (the store stayed locked)."""
        return self.path.with_name(self.path.name + PENDING_SUFFIX)

    def keep_pending(self, uid: str, records: list[RunRecord], output_dir: str | None) -> Path:
        """Keep a run's records beside the store, to be imported the next time it is opened."""
        target = self.pending_dir / f"{uid}.json"
        atomic_write_json(
            target, {"uid": uid, "output_dir": output_dir, "records": [record.to_dict() for record in records]}
        )
        return target

    def _import_pending(self) -> None:
        if not self.pending_dir.is_dir():
            return
        for file in sorted(self.pending_dir.glob("*.json")):
            try:
                pending = json.loads(file.read_text())
                records = [RunRecord.from_dict(item) for item in pending["records"]]
                uid, output_dir = str(pending["uid"]), pending.get("output_dir")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                warn(f"{file}: a pending result that cannot be read ({exc}); left where it is")
                continue
            try:
                if self.get(uid) is None:
                    self.start(records[0].command if records else "unknown", {}, output_dir, uid=uid)
                self.finish(uid, records, output_dir)
            except StoreBusy:
                return  # still busy: the next open tries again
            file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.pending_dir.rmdir()

    def _mark_dead_runs(self) -> None:
        """A `running` row of this host whose process is gone was interrupted (a kill, a power cut)."""
        host = hostname()
        rows = self._read(
            lambda db: db.execute(
                "SELECT uid, pid, pid_started FROM runs WHERE status = 'running' AND host = ?", (host,)
            ).fetchall()
        )
        for uid, pid, started in rows:
            if pid is not None and not still_running(int(pid), started):
                self.end(uid, "interrupted", f"its process {pid} on {host} is gone (found when the store was opened)")

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        return self._read(lambda db: db.execute("PRAGMA user_version").fetchone()[0])

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
        pid = os.getpid()
        self._write(
            lambda db: db.execute(
                "INSERT INTO runs (uid, command, status, started_at, config, output_dir, workload, case_name, "
                "fingerprint, host, pid, pid_started) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    uid,
                    command,
                    _now(),
                    _json(config),
                    output_dir,
                    workload,
                    case_name,
                    fingerprint,
                    hostname(),
                    pid,
                    start_time(pid),
                ),
            )
        )
        return uid

    def claim(self, uid: str) -> None:
        """This process now runs the row (a case process taking over the row `run` made for it)."""
        pid = os.getpid()
        self._write(
            lambda db: db.execute(
                "UPDATE runs SET host = ?, pid = ?, pid_started = ? WHERE uid = ?",
                (hostname(), pid, start_time(pid), uid),
            )
        )

    def finish(self, uid: str, records: list[RunRecord], output_dir: str | None = None) -> None:
        """Mark the row finished with the first record; further records (a sweep) become rows of their own."""
        if not records:
            self.end(uid, "finished")
            return
        first, *rest = records

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT workload, case_name, fingerprint FROM runs WHERE uid = ?", (uid,)).fetchone()
            workload, case_name, fingerprint = row if row else (None, None, None)
            db.execute(
                "UPDATE runs SET status = 'finished', command = ?, ended_at = ?, git_sha = ?, config = ?, metrics = ?, "
                "environment = ?, output_dir = COALESCE(?, output_dir), error = NULL, experiment = ? WHERE uid = ?",
                (
                    first.command,  # what the record says it is (`bench --roof` records `bench-roof`)
                    _now(),
                    first.environment.get("git_sha"),
                    _json(first.config),
                    _json(first.metrics),
                    _json(first.environment),
                    output_dir,
                    _record_experiment(first),
                    uid,
                ),
            )
            for record in rest:
                db.execute(
                    "INSERT INTO runs (uid, command, status, started_at, ended_at, git_sha, config, metrics, "
                    "environment, output_dir, workload, case_name, fingerprint, parent_uid, experiment) "
                    "VALUES (?, ?, 'finished', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        record.command,
                        record.timestamp,
                        _now(),
                        record.environment.get("git_sha"),
                        _json(record.config),
                        _json(record.metrics),
                        _json(record.environment),
                        str(record.written_to) if record.written_to else output_dir,
                        workload,
                        case_name,
                        fingerprint,
                        uid,
                        _record_experiment(record),
                    ),
                )
            db.execute("COMMIT")

        self._write(write)

    def end(self, uid: str, status: str, error: str | None = None) -> None:
        """Set a row's final status (failed, interrupted, or finished without a record)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._write(
            lambda db: db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE uid = ?", (status, _now(), error, uid)
            )
        )

    def add(self, record: RunRecord, output_dir: str | None = None) -> str:
        """Import one finished record (e.g. an old metrics.json)."""
        uid = self.start(record.command, record.config, output_dir)
        self.finish(uid, [record], output_dir)
        return uid

    def insert_copy(self, run: StoredRun) -> bool:
        """Add an ended row from another store exactly as it is; False when a row with its uid is here already."""
        if run.status == "running":
            raise ValueError("a running row is copied when it has ended")

        def write(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT OR IGNORE INTO runs (uid, command, status, started_at, ended_at, git_sha, config, metrics, "
                "environment, output_dir, error, workload, case_name, fingerprint, parent_uid, experiment) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.uid,
                    run.command,
                    run.status,
                    run.started_at,
                    run.ended_at,
                    run.git_sha,
                    _json(run.config),
                    _json(run.metrics),
                    _json(run.environment),
                    run.output_dir,
                    run.error,
                    run.workload,
                    run.case_name,
                    run.fingerprint,
                    run.parent_uid,
                    _experiment(run.command, run.config, run.metrics, run.environment),
                ),
            )
            return cursor.rowcount

        return self._write(write) == 1

    def set_tracking(self, uid: str, tracking: dict[str, Any]) -> None:
        """Where the row goes on a tracking server, and its run id there once it is logged."""
        self._write(lambda db: db.execute("UPDATE runs SET tracking = ? WHERE uid = ?", (_json(tracking), uid)))

    def tracking(self, uid: str) -> dict[str, Any] | None:
        """The row's tracking entry (None: never asked for)."""
        row = self._read(lambda db: db.execute("SELECT tracking FROM runs WHERE uid = ?", (uid,)).fetchone())
        return json.loads(row[0]) if row and row[0] else None

    def tracking_pending(self) -> list[str]:
        """Uids of ended rows meant for a tracking server that has not taken them yet, oldest first."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT uid, tracking FROM runs WHERE tracking IS NOT NULL AND status != 'running' ORDER BY id"
            ).fetchall()
        )
        return [uid for uid, text in rows if not json.loads(text).get("run_id")]

    # ---- reads ----------------------------------------------------------------------------------------------

    def runs(self, where: str = "", params: tuple[Any, ...] = ()) -> list[StoredRun]:
        """Rows matching an SQL condition on the table's columns, oldest first."""
        present = getattr(self, "_columns", None)  # a read-only store of an older schema lacks later columns
        columns = [c if present is None or c in present else f"NULL AS {c}" for c in ROW_COLUMNS]
        sql = f"SELECT {', '.join(columns)} FROM runs"
        if where:
            sql += f" WHERE {where}"
        rows = self._read(lambda db: db.execute(sql + " ORDER BY id", params).fetchall())
        runs = []
        for r in rows:
            try:
                sections = [json.loads(r[i]) for i in (6, 7, 8)]
                if not all(isinstance(section, dict) for section in sections):
                    raise ValueError("a section is not a JSON object")
            except (TypeError, ValueError) as exc:
                warn(f"{self.path}: run {r[0]} has unreadable JSON ({exc}); left out")
                continue
            run = StoredRun(r[0], r[1], r[2], r[3], r[4], r[5], *sections, *r[9:])
            if self.read_only:  # its stored ids may be of another declaration (or none): the current one's
                run.experiment = _experiment(run.command, run.config, run.metrics, run.environment)
            runs.append(run)
        return runs

    def get(self, uid: str) -> StoredRun | None:
        """One row by uid."""
        found = self.runs("uid = ?", (uid,))
        return found[0] if found else None

    def finished_case(self, workload: str, case_name: str, fingerprint: str) -> StoredRun | None:
        """The newest finished row of this workload case with this fingerprint, made on this machine (a row merged
        from another machine's store is that machine's result, not this one's)."""
        found = self.runs(
            "workload = ? AND case_name = ? AND fingerprint = ? AND status = 'finished' AND parent_uid IS NULL",
            (workload, case_name, fingerprint),
        )
        here = [run for run in found if run.environment.get("hostname", hostname()) == hostname()]
        return here[-1] if here else None
