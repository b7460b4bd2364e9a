"""The main job talks: progress relayed from each case through its progress file, estimates before work starts,
ETAs from the estimates of the cases still to come, models named in the KPI table, every timed figure labelled."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertbench.cli import main
from bertbench.configs import RunConfig
from bertbench.jobs.run_progress import CaseProgress, RunProgress
from bertbench.progress import CHANNEL_ENV, announce, progress_bar
from bertbench.results.environment import environment
from bertbench.results.kpi import kpi_row, model_label, table_rows, timing_label
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore
from bertbench.workloads import load_workload
from bertbench.workloads.estimate import Estimate, estimate_cases
from bertbench.workloads.plan import plan_cases

from .conftest import DATA

SMALL = """
name: talk
description: a training case, an eval of its model, a corpus
cases:
  - name: train
    job: finetune
    task: sst2
    options:
      model: bert-tiny
      train: "{data}/sst2/train.tsv"
      max_train_samples: 4000
      max_steps: 120
      batch_size: 16
      threads: 1
      log_every: 10
  - name: score
    job: eval
    task: sst2
    needs: [train]
    options: {model: "{case:train}", data: "{data}/sst2/dev.tsv", max_samples: 200}
  - name: corpus
    job: build-corpus
    options: {sst2: ["{data}/sst2/dev.tsv"], output: "{output}/c.txt"}
"""


def test_a_case_reports_its_bars_and_phases_through_the_channel_even_without_drawing(tmp_path: Path, monkeypatch):
    channel = tmp_path / "progress.jsonl"
    monkeypatch.setenv(CHANNEL_ENV, str(channel))
    announce("exporting to ONNX")
    with progress_bar("train", total=5, enabled=False, initial={"loss": 1.0}) as advance:
        for step in range(5):
            advance(1, loss=1.0 / (step + 1))
    events = [json.loads(line) for line in channel.read_text().splitlines()]
    assert events[0]["phase"] == "exporting to ONNX"
    assert events[1] == {**events[1], "bar": "train", "done": 0, "total": 5}
    assert events[-1]["end"] is True and events[-1]["done"] == 5 and events[-1]["fields"]["loss"] == 0.2
    progress = CaseProgress(channel)
    with open(channel, "a") as handle:
        handle.write('{"t": 1, "bar": "eval sst2", "done": 3')  # half a line: read on the next poll
    progress.read()
    assert progress.bar == "train" and progress.done == 5 and progress.phase == "train done"
    with open(channel, "a") as handle:
        handle.write(', "total": 10}\n')
    progress.read()
    assert progress.bar == "eval sst2" and progress.what() == "eval sst2 3/10 30%"


def test_the_run_eta_adds_the_estimates_of_the_cases_to_come(tmp_path: Path) -> None:
    estimates = {"a": Estimate(100.0, "measured"), "b": Estimate(50.0, "estimate"), "c": Estimate(0.0, "skip")}
    progress = RunProgress("w", ["a", "b", "c"], estimates, live=False)
    assert progress.run_remaining() == 150.0
    channel = tmp_path / "a.jsonl"
    channel.write_text("")
    progress.case_started("a", channel)
    progress.progress.started -= 40  # the case has run 40 s: 60 s of its estimate left
    assert progress.run_remaining() == pytest.approx(110.0, abs=1.0)
    now = time.time()
    channel.write_text(json.dumps({"t": now, "bar": "train", "done": 10, "total": 30}) + "\n")
    progress.progress.read()
    progress.progress.bar_started -= 20  # 10 of 30 steps in 20 s: 40 s to go, by the bar's own pace
    assert progress.case_remaining() == pytest.approx(40.0, abs=1.0)
    progress.case_ended("a")
    assert progress.run_remaining() == 50.0
    assert RunProgress("w", ["x"], {"x": Estimate(None, "unknown")}, live=False).run_remaining() is None


def test_estimates_come_from_earlier_runs_of_the_case_on_this_cpu_else_from_flops(tmp_path: Path) -> None:
    path = tmp_path / "talk.yaml"
    path.write_text(SMALL)
    workload = load_workload(str(path))
    config = RunConfig(workload=str(path), data_dir=DATA, output_root=tmp_path / "runs", store=tmp_path / "s.sqlite")
    planned = plan_cases(workload, config, workload.cases)
    store = ResultsStore(tmp_path / "s.sqlite")
    fresh = estimate_cases(planned, store, "talk", tmp_path / "cache")
    assert fresh["corpus"].basis == "estimate" and fresh["corpus"].seconds > 0
    assert fresh["train"].basis.startswith("estimate") and fresh["train"].seconds > 0
    assert fresh["score"].seconds > 0  # the model of a case is known from the case that trains it
    train = planned[0]
    uid = store.start("finetune", {}, workload="talk", case_name="train", fingerprint=train.fingerprint)
    store.finish(uid, [RunRecord("finetune", {}, {"steps": 120}, environment=environment())])  # this machine
    db_time = "2026-01-01T00:00:00+00:00"
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("UPDATE runs SET started_at = ?, ended_at = '2026-01-01T00:01:30+00:00' WHERE uid = ?", (db_time, uid))
    db.commit()
    db.close()
    measured = estimate_cases(planned, store, "talk", tmp_path / "cache")
    assert measured["train"] == Estimate(90.0, "measured")


def test_dry_run_states_each_case_with_its_estimate(tmp_path: Path, capsys) -> None:
    path = tmp_path / "talk.yaml"
    path.write_text(SMALL)
    argv = ["run", str(path), "--dry-run", "--data-dir", str(DATA), "--output-root", str(tmp_path / "runs")]
    assert main([*argv, "--store", str(tmp_path / "none.sqlite")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 3  # the command lines, on stdout
    assert "run talk: 3 cases, estimated" in captured.err
    for case in ("train (finetune sst2)", "score (eval sst2)", "corpus (build-corpus)"):
        assert f"  {case}: " in captured.err and "(estimate" in captured.err
    assert not (tmp_path / "none.sqlite").exists()  # a dry run records nothing


def test_the_kpi_table_names_models_and_labels_every_timed_figure() -> None:
    trained = {"model": "/x/runs/talk/train", "base_model": "minilm-l6", "trained_as": "finetune sst2"}
    assert model_label({**trained, "trained_by": "train"}) == "minilm-l6 fine-tuned on sst2 by train"
    assert model_label({"model": "bert-base", "random_weights": True}) == "bert-base (random)"
    assert timing_label({"throughput": 1.0, "contended": False, "quiet_roof_known": True}) == "quiet"
    assert timing_label({"throughput": 1.0, "contended": False, "quiet_roof_known": False}) == "quiet (no roof)"
    assert timing_label({"train_samples_per_s": 1.0, "contended": True}) == "contended"
    assert timing_label({"throughput": 1.0}) == "not checked"
    assert timing_label({"accuracy": 0.9}) is None
    row = table_rows([kpi_row({"command": "eval", "case_name": "score", "throughput": 2.0, "contended": False})])[0]
    assert row["Case"] == "score" and row["notes"] == "quiet"


@pytest.mark.e2e
def test_run_into_a_log_says_what_runs_at_least_every_few_seconds(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "talk.yaml"
    path.write_text(SMALL)
    log = tmp_path / "run.log"
    argv = [sys.executable, "-m", "bertbench", "run", str(path), "--data-dir", str(DATA)]
    argv += ["--output-root", str(tmp_path / "runs"), "--store", str(tmp_path / "s.sqlite"), "--cache-dir"]
    env = {**os.environ, "BERTBENCH_PROGRESS_EVERY": "3"}
    arrivals: list[tuple[float, str]] = []
    with open(log, "w") as handle:
        process = subprocess.Popen([*argv, str(cache_dir)], stdout=handle, stderr=subprocess.STDOUT, env=env)
        seen = 0
        while process.poll() is None:
            lines = log.read_text().splitlines()
            arrivals += [(time.monotonic(), line) for line in lines[seen:]]
            seen = len(lines)
            time.sleep(0.1)
    assert process.returncode == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "run talk: 3 cases, estimated" in text and "train: started (1/3, estimated" in text
    relayed = [line for _, line in arrivals if line.startswith("run talk ") and "| train (" in line]
    assert any("train " in line and "/120" in line for line in relayed), relayed  # the case's own training bar
    times = [t for t, _ in arrivals]
    first_case = next(t for t, line in arrivals if "train: started" in line)
    last_case = next(t for t, line in arrivals if "corpus: finished" in line)
    gaps = [b - a for a, b in itertools.pairwise(times) if first_case <= a and b <= last_case]
    assert max(gaps) <= 3.0 + 1.0, max(gaps)
    store = ResultsStore(tmp_path / "s.sqlite")
    rows = {r.case_name: r.flat() for r in store.runs("parent_uid IS NULL AND case_name IS NOT NULL")}
    for case in ("train", "score"):  # every timed figure carries the quiet check
        assert isinstance(rows[case]["contended"], bool) and "quiet_basis" in rows[case]
    assert rows["score"]["base_model"] == "bert-tiny" and rows["score"]["trained_by"] == "train"
    capture = subprocess.run(
        [sys.executable, "-m", "bertbench", "report", "--store", str(tmp_path / "s.sqlite"), "--format", "json"],
        capture_output=True,
        text=True,
    )
    kpis = {row["Case"]: row for row in json.loads(capture.stdout)}
    assert kpis["score"]["Model"] == "bert-tiny fine-tuned on sst2 by train"
    assert kpis["score"]["notes"].startswith("quiet") or kpis["score"]["notes"].startswith("contended")
