"""A fleet's results in one place: stores read together (files, folders), stores merged by run uid (never twice),
machines named by their environment records, compared side by side, and plotted per machine."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from bertbench.cli import main
from bertbench.results.fleet import merge_into, open_stores, read_runs
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore

from .conftest import SQUAD_DEV

OTHER = "machine-b"


def _bench(tmp_path: Path, cache_dir: Path, name: str, store: Path) -> Path:
    out = tmp_path / name
    argv = ["bench", "squad", "--model", "bert-tiny", "--data", str(SQUAD_DEV), "--output-dir", str(out)]
    argv += ["--cache-dir", str(cache_dir), "--max-samples", "24", "--batch-size", "8", "--min-duration", "1"]
    assert main([*argv, "--no-progress", "--store", str(store)]) == 0
    return out


def _json_out(capsys, argv: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.e2e
def test_two_machines_stores_meet_in_one_report_and_merge_without_duplicates(
    tmp_path: Path, cache_dir: Path, capsys
) -> None:
    here = socket.gethostname()
    stores = tmp_path / "stores"
    stores.mkdir()
    a, b = stores / "a.sqlite", stores / "b.sqlite"
    ours = json.loads((_bench(tmp_path, cache_dir, "here", a) / "metrics.json").read_text())["throughput"]
    # the other machine's run: the same bench, its metrics.json as that machine would have written it (its own
    # hostname, CPU and speed, its own run uid), brought into that machine's store by `results import`
    other = _bench(tmp_path, cache_dir, "there", tmp_path / "scratch.sqlite")
    record = json.loads((other / "metrics.json").read_text())
    mine = record["throughput"]
    record.update(hostname=OTHER, cpu_model="Other CPU", throughput=mine / 2, run_uid=uuid.uuid4().hex)
    (other / "metrics.json").write_text(json.dumps(record))
    assert main(["results", "import", str(other), "--store", str(b)]) == 0

    # several stores at once, or the folder that holds them: one row per machine, each named
    for given in (["--store", str(a), "--store", str(b)], ["--store", str(stores)]):
        rows = _json_out(capsys, ["report", *given, "--format", "json"])
        assert sorted(row["Machine"] for row in rows) == sorted([here, OTHER])
        assert not any("regression" in row["notes"] for row in rows)  # a slower machine is no regression

    # merged into one store: each run once, however often merged, and the store read beside a source still once
    fleet = tmp_path / "fleet.sqlite"
    assert main(["results", "merge", str(a), str(b), "--store", str(fleet)]) == 0
    assert "merged 2 run(s) from 2 store(s)" in capsys.readouterr().err
    assert main(["results", "merge", str(stores), "--store", str(fleet)]) == 0
    said = capsys.readouterr().err
    assert "merged 0 run(s)" in said and "2 already there" in said
    assert len(ResultsStore(fleet).runs()) == 2
    rows = _json_out(capsys, ["report", "--store", str(fleet), "--store", str(a), "--format", "json"])
    assert len(rows) == 2

    # the comparison along the machine: the same configuration on each, with B/A
    compared = _json_out(
        capsys,
        ["report", "--store", str(fleet), "--compare", f"hostname={here}", f"hostname={OTHER}", "--format", "json"],
    )
    assert len(compared) == 1 and compared[0]["A"] == here and compared[0]["B"] == OTHER
    assert compared[0]["throughput B/A"] == pytest.approx(mine / 2 / ours)

    # the page plots each machine's bars with the ratio to the first
    page = tmp_path / "fleet.html"
    assert main(["report", "--store", str(fleet), "--html", str(page)]) == 0
    text = page.read_text()
    assert 'data-plot="machines"' in text and f"× {here}" in text and OTHER in text


def test_merge_copies_ended_rows_as_they_are_and_leaves_running_ones_for_later(tmp_path: Path, capsys) -> None:
    source = ResultsStore(tmp_path / "other.sqlite")
    done = source.add(RunRecord("eval", {"task": "sst2"}, {"accuracy": 0.9}, environment={"hostname": OTHER}))
    running = source.start("finetune", {"task": "sst2"})
    destination = ResultsStore(tmp_path / "fleet.sqlite")
    count = merge_into(destination, [source])
    assert (count.added, count.present, count.running) == (1, 0, 1)
    copied = destination.get(done)
    original = source.get(done)
    assert copied == original  # uid, times, sections: the row as the other machine wrote it
    source.end(running, "failed", "stopped")
    count = merge_into(destination, [source])
    assert (count.added, count.present, count.running) == (1, 1, 0)
    assert {run.uid for run in read_runs(open_stores([tmp_path]))} == {done, running}  # a folder: both stores, once

    # merging a store into itself, or from a store that does not exist: one line, nothing made
    assert main(["results", "merge", str(tmp_path / "fleet.sqlite"), "--store", str(tmp_path / "fleet.sqlite")]) == 2
    assert "--store is an input (PATHS" in capsys.readouterr().err
    missing = tmp_path / "new.sqlite"
    assert main(["results", "merge", str(tmp_path / "typo.sqlite"), "--store", str(missing)]) != 0
    assert "typo.sqlite: no results store here" in capsys.readouterr().err and not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--store", str(empty)]) == 2
    assert "no results store in it" in capsys.readouterr().err
    assert os.listdir(empty) == []


def test_machines_are_compared_on_their_own_cores_and_merged_oldest_first(tmp_path: Path, capsys) -> None:
    config = {"task": "squad", "model": "m", "batch_size": 32, "scenario": "offline", "mode": "performance"}
    a, b = ResultsStore(tmp_path / "a.sqlite"), ResultsStore(tmp_path / "b.sqlite")
    big = {**config, "backend": "torch", "precision": "fp32", "instances": 1, "cores_per_instance": 8, "threads": 8}
    small = {**big, "cores_per_instance": 2, "threads": 2}
    b.add(RunRecord("bench", small, {"throughput": 10.0}, environment={"hostname": "small"}))  # older
    time.sleep(1.1)  # rows are stamped to the second
    a.add(RunRecord("bench", big, {"throughput": 40.0}, environment={"hostname": "big"}))
    fleet = tmp_path / "fleet.sqlite"
    assert main(["results", "merge", str(a.path), str(b.path), "--store", str(fleet)]) == 0
    assert [r.environment["hostname"] for r in ResultsStore(fleet).runs()] == ["small", "big"]  # history order
    rows = _json_out(
        capsys, ["report", "--store", str(fleet), "--compare", "hostname=big", "hostname=small", "--format", "json"]
    )
    assert len(rows) == 1 and rows[0]["throughput B/A"] == pytest.approx(0.25)
    assert rows[0]["Instances×Cores"] == "1×8 / 1×2"  # each machine on its own cores, both shown
