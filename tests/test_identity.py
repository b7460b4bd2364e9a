"""A run's identity is declared once (results.identity): the store's experiment ids, comparisons, regressions, the
MLPerf export's pairing and MLflow params all follow it, and the bugs of hand-kept key lists stay fixed."""

from __future__ import annotations

import json
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bertbench.results.identity as identity_module
from bertbench.cli import main
from bertbench.errors import UsageError
from bertbench.results.comparison import compare
from bertbench.results.identity import Role, RunIdentity, experiment_id, identity, identity_keys
from bertbench.results.kpi import kpi_row
from bertbench.results.mlperf_layout import choose
from bertbench.results.record import RunRecord
from bertbench.results.regressions import flag_regressions
from bertbench.results.store import MIGRATIONS, ResultsStore
from bertbench.results.tracking import _run_params

HOST = {"hostname": "alpha", "cpu_model": "AMD EPYC", "cores_available": 2, "git_sha": "abc"}


def _bench(mode: str, **values: Any) -> dict[str, Any]:
    """A flat bench run of the MiniLM SQuAD kind that the export would take."""
    run = {
        "command": "bench",
        "mode": mode,
        "task": "squad",
        "model": "runs/minilm-squad",
        "data_sha256": "d" * 8,
        "backend": "onnxruntime",
        "device": "cpu",
        "precision": "int8",
        "quantization": "dynamic",
        "batch_size": 32,
        "padding": "sorted",
        "scenario": "offline",
        "instances": 1,
        "cores_per_instance": 2,
        "threads": 2,
        "max_seq_length": 384,
        **HOST,
        "result_valid": True,
        "contended": False,
        "throughput": 100.0,
    }
    if mode == "accuracy":
        run.update({"f1": 57.0, "exact_match": 41.0, "answer_text": "mlperf"})
    run.update(values)
    run.setdefault("uid", f"{mode}-{len(json.dumps(values))}-{sorted(values.items())!s}")
    return run


@dataclass(frozen=True, kw_only=True)
class ExtendedIdentity(RunIdentity):
    """The declaration with one more field: how attention is computed (a new path option)."""

    attention_impl: str | None = identity(Role.PATH)


@pytest.fixture
def extended(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line adds the field: the declaration everything derives from."""
    monkeypatch.setattr(identity_module, "RunIdentity", ExtendedIdentity)


def _record(run: dict[str, Any]) -> RunRecord:
    environment = {k: run[k] for k in HOST}
    config = {k: v for k, v in run.items() if k not in environment and k not in ("uid", "command")}
    return RunRecord(str(run["command"]), config, {}, environment=environment)


def test_one_declared_field_reaches_store_comparison_regressions_and_export(extended: None, tmp_path: Path) -> None:
    assert "attention_impl" in identity_keys()
    eager, sdpa = _bench("performance", attention_impl="eager"), _bench("performance", attention_impl="sdpa")
    # the store: two experiments, and the id is the one the declaration gives
    store = ResultsStore(tmp_path / "s.sqlite")
    for run in (eager, sdpa):
        store.add(_record(run))
    stored = [run.flat() for run in store.runs()]
    assert stored[0]["experiment"] != stored[1]["experiment"]
    assert stored[0]["experiment"] == experiment_id(stored[0]) and stored[0]["attention_impl"] == "eager"
    # a comparison along the new key pairs the two; along another key it does not mix them
    rows = compare([eager, sdpa], "attention_impl=eager", "attention_impl=sdpa")
    assert len(rows) == 1 and rows[0]["throughput B/A"] == 1.0
    with pytest.raises(UsageError, match="no run of one set"):
        compare([eager, sdpa], eager["uid"], sdpa["uid"])
    # a regression is judged within the experiment only
    slower_sdpa = {**sdpa, "throughput": 40.0, "uid": "slower-sdpa"}
    history = [eager, slower_sdpa]
    rows = [kpi_row(run) for run in history]
    flag_regressions(rows, history)
    assert rows[1].regressions == []
    slower_eager = {**eager, "throughput": 40.0, "uid": "slower-eager"}
    rows = [kpi_row(run) for run in (eager, slower_eager)]
    flag_regressions(rows, [eager, slower_eager])
    assert rows[1].regressions and rows[1].regressions[0].startswith("throughput")
    # the export pairs a performance run with an accuracy run of its own experiment only
    entries, refused = choose([eager, _bench("accuracy", attention_impl="sdpa")])
    assert entries == [] and "no accuracy-mode run of the same configuration" in refused[0]
    entries, _ = choose([eager, _bench("accuracy", attention_impl="eager")])
    assert len(entries) == 1 and entries[0].accuracy["attention_impl"] == "eager"
    # MLflow params carry it
    assert _run_params(store.runs()[0])["attention_impl"] == "eager"


def test_a_store_recomputes_its_experiments_when_the_declaration_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    store = ResultsStore(path)
    for impl in ("eager", "sdpa"):
        store.add(_record(_bench("performance", attention_impl=impl)))
    before = {run.flat()["experiment"] for run in store.runs()}
    assert len(before) == 1  # not declared: the same experiment
    monkeypatch.setattr(identity_module, "RunIdentity", ExtendedIdentity)
    after = {run.flat()["experiment"] for run in ResultsStore(path).runs()}
    assert len(after) == 2 and not after & before


def test_an_old_store_keeps_loading_with_experiment_ids(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    run = _bench("performance")
    config = {k: v for k, v in run.items() if k not in HOST and k not in ("uid", "command")}
    db.execute(
        "INSERT INTO runs (uid, command, status, started_at, config, metrics, environment) VALUES "
        "('old1', 'bench', 'finished', '2026-01-01T00:00:00+00:00', ?, '{}', ?)",
        (json.dumps(config), json.dumps({k: run[k] for k in HOST})),
    )
    db.commit()
    db.close()
    old = ResultsStore(path).get("old1")
    assert old is not None and old.experiment == experiment_id(run)


# ---- the bugs of hand-kept key lists ------------------------------------------------------------------------------


def test_a_cpu_run_and_a_cuda_run_are_different_experiments() -> None:
    cpu, cuda = _bench("performance", uid="cpu"), _bench("performance", device="cuda", throughput=900.0, uid="cuda")
    later_cpu = {**cpu, "uid": "later", "throughput": 99.0}
    rows = [kpi_row(run) for run in (cuda, later_cpu)]
    flag_regressions(rows, [cpu, cuda, later_cpu])
    assert rows[1].regressions == []  # against the CPU run only: within its noise
    entries, refused = choose([cpu, _bench("accuracy", device="cuda")])  # a CUDA accuracy run for a CPU test
    assert entries == [] and len(refused) == 1


def test_the_export_never_pairs_runs_of_two_machines() -> None:
    beta = {"hostname": "beta", "cpu_model": "Intel Xeon"}
    entries, refused = choose([_bench("performance"), _bench("accuracy", **beta)])
    assert entries == [] and "no accuracy-mode run" in refused[0]
    entries, _ = choose([_bench("performance"), _bench("accuracy"), _bench("performance", **beta, uid="b")])
    assert [entry.performance["hostname"] for entry in entries] == ["alpha"]


def _fake_loadgen(folder: Path) -> None:
    """The files the export copies (their bytes are LoadGen's business, not this test's)."""
    logs = folder / "loadgen"
    logs.mkdir(parents=True)
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json"):
        (logs / name).write_text(f"{folder.name} {name}\n")


def test_an_export_of_a_merged_fleet_describes_each_machine(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "fleet.sqlite")
    machines = {"alpha": "AMD EPYC", "beta": "Intel Xeon"}
    for host, cpu in machines.items():
        for mode in ("performance", "accuracy"):
            folder = tmp_path / f"{host}-{mode}"
            _fake_loadgen(folder)
            run = _bench(mode, hostname=host, cpu_model=cpu, physical_cores=2, cpu_count=2)
            environment = {k: run[k] for k in (*HOST, "physical_cores", "cpu_count")}
            config = {k: v for k, v in run.items() if k not in environment and k not in ("uid", "command")}
            store.add(RunRecord("bench", config, {}, environment=environment), str(folder))
    out = tmp_path / "export"
    assert main(["export", "mlperf", "--store", str(store.path), "--output", str(out)]) == 0
    systems = out / "open" / "bertbench" / "systems"
    described = {path.stem: json.loads(path.read_text()) for path in systems.glob("*.json")}
    assert {name: d["host_processor_model_name"] for name, d in described.items()} == {
        "alpha_bertbench": "AMD EPYC",
        "beta_bertbench": "Intel Xeon",
    }
    for host in machines:
        results = out / "open" / "bertbench" / "results" / f"{host}_bertbench" / "bert-99" / "Offline"
        copied = (results / "performance" / "run_1" / "mlperf_log_summary.txt").read_text()
        assert copied.startswith(f"{host}-performance")
        assert (results / "accuracy" / "mlperf_log_accuracy.json").read_text().startswith(f"{host}-accuracy")
    # one --system name for runs of two machines would describe one machine for both: refused in one line
    code = main(["export", "mlperf", "--store", str(store.path), "--output", str(tmp_path / "x"), "--system", "s"])
    assert code == 2 and not (tmp_path / "x").exists()


def test_run_never_skips_a_case_because_another_machine_finished_it(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "s.sqlite")
    for host in ("otherbox", socket.gethostname()):
        uid = store.start("eval", {}, str(tmp_path), workload="w", case_name="c", fingerprint="f")
        store.finish(uid, [RunRecord("eval", {}, {"accuracy": 0.5}, environment={"hostname": host})])
        found = store.finished_case("w", "c", "f")
        if host == "otherbox":
            assert found is None  # a merged row of another machine is that machine's result
        else:
            assert found is not None and found.environment["hostname"] == host
