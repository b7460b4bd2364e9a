"""Say what is true: the KPI table's columns, comparisons along one key, --last and --where as a user means them,
help texts, and what `run -k` leaves in the report page."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from bertbench.cli import main
from bertbench.results.formatting import render
from bertbench.results.kpi import kpi_row, table_rows
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore

from .conftest import DATA

CONFIG = {"task": "squad", "model": "m", "batch_size": 32, "threads": 2, "max_seq_length": 384, "instances": 1}


def _store(tmp_path: Path) -> Path:
    store = ResultsStore(tmp_path / "s.sqlite")
    fp32 = {**CONFIG, "backend": "torch", "precision": "fp32", "scenario": "offline", "mode": "performance"}
    int8 = {**fp32, "backend": "onnxruntime", "precision": "int8", "quantization": "dynamic", "per_channel": True}
    single = {**fp32, "scenario": "singlestream", "batch_size": 1}
    for config, throughput in ((fp32, 2.40863), (int8, 59.2119), (single, 30.0)):
        metrics = {"throughput": throughput, "latency_p90_ms": 12345.678, "contended": False}
        store.add(RunRecord("bench", config, metrics, environment={"git_sha": "x", "cpu_model": "c"}))
    store.add(RunRecord("run", {"workload": "w"}, {"finished": 3}, environment={}))  # the newest row: not a KPI
    return tmp_path / "s.sqlite"


def test_offline_rows_show_no_p90_and_every_column_keeps_its_decimals(tmp_path: Path) -> None:
    runs = [r.flat() for r in ResultsStore(_store(tmp_path)).runs("command = 'bench'")]
    rows = table_rows([kpi_row(r) for r in runs])
    assert [row["p90 ms"] for row in rows] == [None, None, 12345.678]  # Offline: the whole data set is one query
    lines = render(rows, "markdown").splitlines()[2:]
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    throughput = [c[8] for c in cells]
    assert throughput == ["2.4", "59.2", "30.0"]  # one decimal in every row, not 2.4086 beside 59.21


def test_compare_along_precision_pairs_runs_that_differ_only_in_it(tmp_path: Path, capsys) -> None:
    store = str(_store(tmp_path))
    assert main(["report", "--store", store, "--compare", "precision=fp32", "precision=int8", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["A"] == "fp32 torch" and rows[0]["B"] == "int8 onnxruntime dynamic"
    assert abs(rows[0]["throughput B/A"] - 59.2119 / 2.40863) < 1e-9
    csv_out = tmp_path / "c.csv"
    argv = ["report", "--store", store, "--compare", "precision=fp32", "precision=int8", "--format", "csv"]
    assert main([*argv, "--output", str(csv_out)]) == 0
    assert csv_out.read_text().splitlines()[0].endswith("throughput B/A")


def test_last_counts_kpi_rows_and_a_misspelt_where_key_is_an_error(tmp_path: Path, capsys) -> None:
    store = str(_store(tmp_path))
    assert main(["report", "--store", store, "--format", "json", "--last", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["Scenario"] == "singlestream"
    assert main(["report", "--store", store, "--where", "precison=int8"]) == 2
    error = capsys.readouterr().err
    assert "no run in the store has the key 'precison'" in error and "did you mean precision" in error


def test_help_shows_defaults_as_typed(capsys) -> None:
    with contextlib.suppress(SystemExit):
        main(["bench", "squad", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 32)" in out and "(32,)" not in out
    with contextlib.suppress(SystemExit):
        main(["eval", "squad", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "results only where a batch's contents matter (per-batch dynamic INT8)" in out


def test_list_and_dry_run_are_not_runs_and_run_k_keeps_every_case_in_the_report(tmp_path: Path) -> None:
    text = "name: w\ndescription: d\ncases:\n"
    text += "  - name: corp\n    job: build-corpus\n"
    text += "    options: {sst2: ['{data}/sst2/dev.tsv'], output: '{output}/c.txt'}\n"
    text += (
        "  - name: score\n    job: eval\n    task: sst2\n    options: {model: bert-tiny, data: '{data}/sst2/dev.tsv'}\n"
    )
    path = tmp_path / "w.yaml"
    path.write_text(text)
    store_path = tmp_path / "s.sqlite"
    base = ["run", str(path), "--data-dir", str(DATA), "--output-root", str(tmp_path / "runs"), "--no-progress"]
    assert main([*base, "--store", str(store_path), "--list"]) == 0
    assert main([*base, "--store", str(store_path), "--dry-run"]) == 0
    assert not store_path.exists()  # nothing was run, so nothing is recorded
    store = ResultsStore(store_path)  # an earlier result of the other case
    config = {"task": "sst2", "model": "bert-tiny", "backend": "torch", "precision": "fp32", "batch_size": 32}
    uid = store.start("eval", config, workload="w", case_name="score", fingerprint="earlier")
    store.finish(uid, [RunRecord("eval", config, {"accuracy": 0.51, "throughput": 300.0}, environment={})])
    assert main([*base, "--store", str(store_path), "-k", "corp"]) == 0
    page = (tmp_path / "runs" / "w" / "report.html").read_text()
    assert ">score<" in page and "0.5100" in page  # the case -k left out keeps its row on the page
    assert [r.command for r in ResultsStore(store_path).runs()].count("run") == 1
