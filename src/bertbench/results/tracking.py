"""Runs also logged to an MLflow tracking server (`--mlflow-uri`, or MLflow's own MLFLOW_TRACKING_URI), the place
ML teams already keep results: the config as params, every numeric metric (a training curve as its history), the
environment as tags, the run's files (LoadGen logs, predictions, the HTML report) as artifacts; a workload is one
parent run with its cases nested under it.

The SQLite store stays the source of truth. A server that does not answer costs one warning line; the row keeps
its place (`tracking` column) and `bertbench results push` logs it later. A run is found on the server by its
bertbench uid (tag `bertbench.uid`), so pushing again never logs it twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from bertbench.results.identity import Role, identity_of, keys_with
from bertbench.results.store import ResultsStore, StoredRun

URI_ENV = "MLFLOW_TRACKING_URI"
PARENT_ENV = "BERTBENCH_TRACKING_PARENT"  # set by `run` for its cases: the uid of the workload's own row
EXPERIMENT = "bertbench"
UID_TAG = "bertbench.uid"
# What a run's folder holds that a reader wants beside its numbers (weights and caches are not logged).
ARTIFACTS = (
    "metrics.json",
    "predictions.json",
    "predictions.tsv",
    "train_log.jsonl",
    "report.html",
    "loadgen/mlperf_log_summary.txt",
    "loadgen/mlperf_log_detail.txt",
    "loadgen/mlperf_log_accuracy.json",
)
MAX_PARAM_LENGTH = 6000  # MLflow's limit for one param value
BATCH = 100  # params per log_batch call (MLflow takes at most 100)


class TrackingUnavailable(Exception):
    """The tracking server did not take the run (unreachable, refused, or MLflow not installed)."""


def tracking_uri(explicit: str | None) -> str | None:
    """--mlflow-uri, else MLFLOW_TRACKING_URI, else None (no tracking)."""
    return explicit or os.environ.get(URI_ENV) or None


PROBE_TIMEOUT_S = 5.0


def _probe(uri: str) -> None:
    """Fail at once, with one reason, where MLflow would retry for minutes: a database it cannot open (its
    SQLAlchemy store retries for ~2 minutes), a folder it cannot write, a server that does not accept a connection."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme.startswith("sqlite"):
        name = urllib.parse.unquote(parsed.path)[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        if name and name != ":memory:":
            try:  # what MLflow is about to do: open (or create) the database file
                sqlite3.connect(f"file:{urllib.parse.quote(name)}?mode=rwc", uri=True).execute(
                    "PRAGMA schema_version"
                ).fetchone()
            except sqlite3.Error as exc:
                raise TrackingUnavailable(f"{uri}: cannot open the database {name} ({exc})") from None
    elif parsed.scheme in ("", "file"):
        folder = Path(urllib.parse.unquote(parsed.path))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as exc:
            raise TrackingUnavailable(f"{uri}: cannot write the folder {folder} ({exc.strerror or exc})") from None
    elif parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=PROBE_TIMEOUT_S).close()
        except OSError as exc:
            raise TrackingUnavailable(f"{uri}: no server answers ({exc.strerror or exc})") from None


def _client(uri: str) -> Any:
    # A server that does not answer must cost seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our output stays ours
    _probe(uri)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingUnavailable("MLflow is not installed (pip install 'bertbench[mlflow]')") from None
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its retry warnings are ours to say, in one line
    return MlflowClient(tracking_uri=uri)


def _key(name: str) -> str:
    """A name MLflow accepts as a param, metric or tag key."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


def _millis(stamp: str | None) -> int | None:
    if not stamp:
        return None
    try:
        return int(dt.datetime.fromisoformat(stamp).timestamp() * 1000)
    except ValueError:
        return None


def _params(config: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[_key(key)] = text[:MAX_PARAM_LENGTH]
    return out


def _run_params(run: StoredRun) -> dict[str, str]:
    """The run's identity (results.identity: what makes it an experiment, wherever its record keeps it; the machine
    goes into tags), then the rest of its config."""
    identity = identity_of(run.flat())
    machine = set(keys_with(Role.MACHINE))
    return {**_params({k: v for k, v in identity.items() if k not in machine}), **_params(run.config)}


def _metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _curve(output_dir: Path) -> list[tuple[str, float, int]]:
    """The training log's loss and learning rate by step (a metric's history on the server)."""
    log = output_dir / "train_log.jsonl"
    points: list[tuple[str, float, int]] = []
    if not log.is_file():
        return points
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        step = entry.get("step")
        for name in ("loss", "lr"):
            if isinstance(step, int) and isinstance(entry.get(name), int | float):
                points.append((f"train_{name}", float(entry[name]), step))
    return points


def _find(client: Any, experiment_id: str, uid: str) -> Any | None:
    found = client.search_runs([experiment_id], filter_string=f"tags.`{UID_TAG}` = '{uid}'", max_results=1)
    return found[0] if found else None


def _experiment(client: Any) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)


def log_runs(uri: str, runs: list[StoredRun], parent: StoredRun | None = None) -> list[str]:
    """Log ended rows (under `parent`, created first when the server lacks it): their MLflow run ids. A row
    already there is completed, never duplicated. One client, one experiment lookup, one parent for them all."""
    try:
        client = _client(uri)
        experiment_id = _experiment(client)
        parent_id = _open_run(client, experiment_id, parent, None).info.run_id if parent else None
        return [_log(client, experiment_id, run, parent_id) for run in runs]
    except TrackingUnavailable:
        raise
    except Exception as exc:  # MlflowException, connection and HTTP errors: the server did not take it
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise TrackingUnavailable(f"{uri}: {reason}") from None


def _log(client: Any, experiment_id: str, run: StoredRun, parent_id: str | None) -> str:
    from mlflow.entities import Metric, Param, RunTag

    existing = _open_run(client, experiment_id, run, parent_id)
    run_id = existing.info.run_id
    if existing.info.status == "FINISHED" and existing.data.tags.get("bertbench.status") == run.status:
        return run_id  # logged before: nothing twice
    stamp = _millis(run.ended_at) or _millis(run.started_at) or 0
    params = [Param(k, v) for k, v in _run_params(run).items() if k not in existing.data.params]
    metrics = [Metric(k, v, stamp, 0) for k, v in _metrics(run.metrics).items()]
    if run.output_dir:
        metrics += [Metric(name, value, stamp, step) for name, value, step in _curve(Path(run.output_dir))]
    for start in range(0, max(len(params), len(metrics)), BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + BATCH], params=params[start : start + BATCH])
    workload = _workload(run)
    tags = [RunTag("bertbench.status", run.status), *([RunTag("bertbench.workload", workload)] if workload else [])]
    client.log_batch(run_id, tags=tags)
    if run.output_dir and Path(run.output_dir).is_dir():
        for relative in ARTIFACTS:
            path = Path(run.output_dir) / relative
            if path.is_file():
                folder = str(Path(relative).parent)
                client.log_artifact(run_id, str(path), None if folder == "." else folder)
    report = run.metrics.get("report")  # a workload's page lies beside its cases, not in a folder of its own
    if isinstance(report, str) and Path(report).is_file():
        client.log_artifact(run_id, report)
    status = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}.get(run.status, "RUNNING")
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=_millis(run.ended_at))
    return run_id


def _workload(run: StoredRun) -> str | None:
    """The workload a row belongs to: a case's column, or the `run` row's own (its file's stem until it ends)."""
    if run.workload:
        return run.workload
    if run.command == "run" and run.config.get("workload"):
        return Path(str(run.config["workload"])).stem
    return None


def _open_run(client: Any, experiment_id: str, run: StoredRun, parent_id: str | None) -> Any:
    """The MLflow run of this bertbench row, created (with its tags) when the server has none yet."""
    existing = _find(client, experiment_id, run.uid)
    if existing is not None:
        return existing
    tags = {
        UID_TAG: run.uid,
        "bertbench.command": run.command,
        "mlflow.source.name": "bertbench " + run.command,
        **{f"bertbench.{k}": v for k, v in (("workload", _workload(run)), ("case", run.case_name)) if v},
        **({"bertbench.experiment": run.experiment} if run.experiment else {}),
        **{_key(k): str(v) for k, v in run.environment.items() if v is not None},  # the machine and the stack
    }
    if run.environment.get("git_sha"):
        tags["mlflow.source.git.commit"] = str(run.environment["git_sha"])
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    name = run.case_name or _workload(run) or run.command
    return client.create_run(experiment_id, start_time=_millis(run.started_at), tags=tags, run_name=name)


def push_row(store: ResultsStore, uid: str, uri: str | None = None) -> str:
    """Log the row `uid` to its server (or `uri`) and note the MLflow run id in the store; its further records (a
    sweep's rows hang under it) go too. Raises TrackingUnavailable."""
    entry = store.tracking(uid) or {}
    target = uri or entry.get("uri")
    if not target:
        raise TrackingUnavailable(f"run {uid}: no tracking server asked for")
    run = store.get(uid)
    if run is None:
        raise TrackingUnavailable(f"run {uid}: not in {store.path}")
    parent = store.get(entry["parent"]) if entry.get("parent") else None
    run_id, *_ = log_runs(target, [run, *store.runs("parent_uid = ?", (uid,))], parent)
    store.set_tracking(uid, {**entry, "uri": target, "run_id": run_id})
    return run_id
