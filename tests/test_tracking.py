"""Runs logged to a real MLflow tracking server (started here on a free port, its own SQLite backend): params,
metrics, environment tags, artifacts, a workload's cases nested under its run; a server that is down costs one
warning and the run is pushed later, never twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from bertbench.cli import main
from bertbench.results.store import ResultsStore

from .conftest import DATA, SST2_DEV

pytestmark = pytest.mark.e2e  # a server process and whole commands


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` as a team runs it: SQLite backend, artifacts served by the server itself."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "art")]
    log = open(root / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the MLflow server did not start: " + (root / "server.log").read_text()[-2000:])
    yield uri
    os.killpg(process.pid, 15)
    process.wait(timeout=30)
    log.close()


WORKLOAD = """
name: tracked
description: two small cases logged to MLflow
cases:
  - name: sst2-accuracy
    job: eval
    task: sst2
    options: {model: bert-tiny, data: "{data}/sst2/dev.tsv", max_samples: 40}
  - name: squad-speed
    job: bench
    task: squad
    options: {model: bert-tiny, data: "{data}/squad/dev.json", max_samples: 16, batch_size: 8, min_duration: 1}
"""


def _runs(uri: str) -> list:
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("bertbench")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def test_a_workload_is_one_parent_run_with_its_cases_nested(
    server: str, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    workload = tmp_path / "tracked.yaml"
    workload.write_text(WORKLOAD)
    argv = ["run", str(workload), "--data-dir", str(DATA), "--output-root", str(tmp_path / "runs")]
    argv += ["--store", str(tmp_path / "s.sqlite"), "--cache-dir", str(cache_dir), "--no-progress"]
    assert main([*argv, "--mlflow-uri", server]) == 0
    assert "not logged to MLflow" not in capsys.readouterr().err
    runs = [r for r in _runs(server) if r.data.tags.get("bertbench.workload") == "tracked"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].data.tags["bertbench.command"] == "run"
    parent = parents[0]
    cases = {r.data.tags["bertbench.case"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert set(cases) == {"sst2-accuracy", "squad-speed"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in cases.values())
    assert all(r.info.status == "FINISHED" for r in [parent, *cases.values()])

    store = ResultsStore(tmp_path / "s.sqlite")
    for name, run in cases.items():
        row = store.runs("case_name = ?", (name,))[0]
        assert run.data.tags["bertbench.uid"] == row.uid  # the store's row, found by its uid
        assert run.data.params["model"] == "bert-tiny"  # the config as params
        assert run.data.tags["hostname"] == socket.gethostname() and run.data.tags["cpu_model"]  # the machine
        assert store.tracking(row.uid)["run_id"] == run.info.run_id
    assert cases["sst2-accuracy"].data.metrics["accuracy"] == pytest.approx(
        store.runs("case_name = 'sst2-accuracy'")[0].metrics["accuracy"]
    )
    assert cases["squad-speed"].data.metrics["throughput"] > 0
    client = mlflow.tracking.MlflowClient(server)
    speed = {a.path for a in client.list_artifacts(cases["squad-speed"].info.run_id, "loadgen")}
    assert "loadgen/mlperf_log_summary.txt" in speed  # LoadGen's own logs beside the numbers
    assert "report.html" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_a_server_that_is_down_costs_one_warning_and_the_run_is_pushed_later_once(
    server: str, tmp_path: Path, cache_dir: Path, capsys
) -> None:
    store = tmp_path / "s.sqlite"
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["eval", "sst2", "--model", "bert-tiny", "--data", str(SST2_DEV), "--max-samples", "20"]
    argv += ["--output-dir", str(tmp_path / "e"), "--cache-dir", str(cache_dir), "--no-progress"]
    assert main([*argv, "--store", str(store), "--mlflow-uri", down]) == 0  # the run itself succeeds
    warnings = [line for line in capsys.readouterr().err.splitlines() if "not logged to MLflow" in line]
    assert len(warnings) == 1 and down in warnings[0] and "results push" in warnings[0]
    (uid,) = ResultsStore(store).tracking_pending()

    assert main(["results", "push", "--store", str(store), "--mlflow-uri", down]) == 1  # still down: it waits
    assert ResultsStore(store).tracking_pending() == [uid]
    assert main(["results", "push", "--store", str(store), "--mlflow-uri", server]) == 0
    assert ResultsStore(store).tracking_pending() == []
    assert main(["results", "push", "--store", str(store), "--mlflow-uri", server]) == 0
    assert "nothing waits" in capsys.readouterr().err
    logged = [r for r in _runs(server) if r.data.tags.get("bertbench.uid") == uid]
    assert len(logged) == 1 and logged[0].info.status == "FINISHED" and "accuracy" in logged[0].data.metrics
