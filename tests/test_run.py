"""`bertbench run` (workloads, cases, skip and resume), the SQLite results store, and `bertbench report`."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertbench.cli import main
from bertbench.results.record import RunRecord
from bertbench.results.store import MIGRATIONS, SCHEMA_VERSION, ResultsStore
from bertbench.workloads import builtin_names, load_workload

from .conftest import DATA, hold_at, wait_for_hold

TINY = """
name: tiny
description: a small workload for tests
reproduces:
  - title: nothing, a test
    source: tests
defaults:
  model: bert-tiny
cases:
  - name: sst2-tiny-training-finetune
    job: finetune
    task: sst2
    options:
      model: minilm-l6
      train: "{data}/sst2/train.tsv"
      eval: "{data}/sst2/dev.tsv"
      max_train_samples: 480
      max_eval_samples: 120
      max_steps: 15
      batch_size: 16
      learning_rate: 3.0e-4
      log_every: 1
  - name: sst2-tiny-accuracy-{precision}
    job: eval
    task: sst2
    needs: [sst2-tiny-training-finetune]
    options:
      model: "{case:sst2-tiny-training-finetune}"
      data: "{data}/sst2/dev.tsv"
      max_samples: 120
    matrix:
      precision: [fp32, int8]
  - name: squad-tiny-performance
    job: bench
    task: squad
    options:
      data: "{data}/squad/dev.json"
      max_samples: 20
      min_duration: 1
      batch_size: "1,8"
  - name: squad-tiny-latency
    job: bench
    task: squad
    options:
      data: "{data}/squad/dev.json"
      max_samples: 20
      min_duration: 1
      scenario: singlestream
      batch_size: 1
  - name: broken-accuracy
    job: eval
    task: sst2
    options:
      data: "{data}/squad/dev.json"  # a SQuAD file is no SST-2 TSV: the case fails when it runs
"""


def write(tmp_path: Path, text: str, name: str = "workload.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_args(tmp_path: Path, workload: Path | str, cache_dir: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(workload),
        "--data-dir",
        str(DATA),
        "--output-root",
        str(tmp_path / "runs"),
        "--store",
        str(tmp_path / "store.sqlite"),
        "--cache-dir",
        str(cache_dir),
        "--no-progress",
        *extra,
    ]


def _wait_for_case_process(orchestrator: subprocess.Popen, job: str, timeout: float = 120) -> int | None:
    """The pid of the orchestrator's child that runs `job` (other short-lived children, like git, are passed over)."""
    children = Path(f"/proc/{orchestrator.pid}/task/{orchestrator.pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and orchestrator.poll() is None:
        for pid in children.read_text().split() if children.exists() else []:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"bertbench" in command and job.encode() in command:
                return int(pid)
        time.sleep(0.05)
    return None


# ---- workload validation ---------------------------------------------------------------------------------------

BAD = [
    ("name: x\ndescription: y\ncases: []\n", "cases: the list is empty"),
    (
        "name: x\ndescription: y\nfrobnicate: 1\ncases: [{name: a, job: eval, task: sst2}]\n",
        "workload.frobnicate: unknown key",
    ),
    ("name: x\ndescription: y\ncases: {a: 1}\n", "workload.cases: must be a list"),
    ("name: x\ndescription: y\ncases: [{name: a, task: sst2}]\n", "cases[0]: missing required key 'job'"),
    ("name: x\ndescription: y\ncases: [{name: a, job: train, task: sst2}]\n", "cases[0].job: unknown job 'train'"),
    ("name: x\ndescription: y\ncases: [{name: a, job: eval, task: sst2, matrix: {}}]\n", "cases[0].matrix: empty"),
    (
        "name: x\ndescription: y\ncases: [{name: a, job: eval, task: sst2, matrix: {batch_size: 8}}]\n",
        "cases[0].matrix.batch_size: must be a non-empty list",
    ),
    (
        "name: x\ndescription: y\ncases: [{name: a, job: eval, task: sst2, processes: two}]\n",
        "cases[0].processes: must be an integer",
    ),
    ("name: x\ndescription: y\ncases: [{name: a, job: eval, task: sst2, needs: [b]}]\n", "needs 'b'"),
    ("name: x\ndescription: y\ncases: [{name: a, job: pretrain, task: sst2}]\n", "job 'pretrain' takes no task"),
    (
        "name: x\ndescription: y\ncases: [{name: a, job: eval, task: sst2, options: {model: '{case:b}'}}]\n",
        "{case:b} without needs",
    ),
    ("name: x\ndescription: [y\n", "malformed YAML at line"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_workload_is_one_line_naming_file_and_key(tmp_path: Path, capsys, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    code = main(["run", str(path), "--list", "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert str(path) in err and expected in err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            "{data: x.tsv, model: bert-tiny, frobnicate: 1}",
            "option 'frobnicate' is not an option of `bertbench eval sst2`",
        ),
        ("{data: x.tsv, model: bert-tiny, batch_size: many}", "--batch-size"),
        ("{data: x.tsv, model: bert-tiny, strict: 3}", "option 'strict' (--strict) is a switch"),
        ("{data: x.tsv, model: bert-tiny, doc_stride: 64}", "option 'doc_stride' is not an option"),
    ],
)
def test_options_are_checked_against_the_jobs_own_parser(tmp_path: Path, capsys, options: str, expected: str) -> None:
    path = write(
        tmp_path, f"name: x\ndescription: y\ncases: [{{name: a, job: eval, task: sst2, options: {options}}}]\n"
    )
    code = main(["run", str(path), "--dry-run", "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and str(path) in err and expected in err, err


def test_matrix_expands_to_named_cases(tmp_path: Path) -> None:
    text = """
name: m
description: names
cases:
  - name: squad-{model}-performance
    job: bench
    task: squad
    options: {data: d.json}
    matrix: {model: [bert-large, bert-base], precision: [int8], batch_size: [32, 1], cores_per_instance: [1]}
"""
    workload = load_workload(str(write(tmp_path, text)))
    assert [c.name for c in workload.cases] == [
        "squad-bertlarge-performance-int8-bs32-ci1",
        "squad-bertlarge-performance-int8-bs1-ci1",
        "squad-bertbase-performance-int8-bs32-ci1",
        "squad-bertbase-performance-int8-bs1-ci1",
    ]
    assert workload.cases[0].options == {
        "data": "d.json",
        "model": "bert-large",
        "precision": "int8",
        "batch_size": 32,
        "cores_per_instance": 1,
    }


def test_every_builtin_workload_plans(tmp_path: Path, capsys) -> None:
    names = builtin_names()
    assert {"default", "proof-sst2", "squad-inference", "cpu-throughput", "pretrain-to-target"} <= set(names)
    for name in names:
        workload = load_workload(name)
        assert workload.reproduces, name  # each cites the page it reproduces
        code = main(
            [
                "run",
                name,
                "--dry-run",
                "--data-dir",
                str(DATA),
                "--store",
                str(tmp_path / "s.sqlite"),
                "--output-root",
                str(tmp_path / "runs"),
            ]
        )
        assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "torch.distributed.run --standalone --nproc-per-node 2 -m bertbench pretrain" in out
    main(["run", "cpu-throughput", "--list", "--store", str(tmp_path / "s.sqlite")])
    listed = capsys.readouterr().out
    assert "squad-bertlarge-performance-onnxruntime-int8-bs32-ci1" in listed and listed.count("bench squad") == 32


def test_k_selects_cases_and_what_they_need(tmp_path: Path, capsys, cache_dir: Path) -> None:
    path = write(tmp_path, TINY)
    assert main(run_args(tmp_path, path, cache_dir, "-k", "accuracy-int8", "--dry-run")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "finetune sst2" in lines[0] and "--precision int8" in lines[1]


# ---- a whole run --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> tuple[Path, int, float]:
    """The tiny workload, run once: (its directory, exit code, wall seconds)."""
    root = tmp_path_factory.mktemp("tiny-run")
    path = write(root, TINY)
    start = time.perf_counter()
    code = main(run_args(root, path, cache_dir))
    return root, code, time.perf_counter() - start


@pytest.mark.e2e
def test_a_failing_case_does_not_stop_the_run(tiny_run) -> None:
    root, code, _ = tiny_run
    assert code == 1  # the exit code counts the failed cases: only broken-accuracy
    store = ResultsStore(root / "store.sqlite")
    by_case = {r.case_name: r for r in store.runs("workload = 'tiny' AND parent_uid IS NULL")}
    assert by_case["broken-accuracy"].status == "failed" and "dev.json" in by_case["broken-accuracy"].error
    finished = {name for name, r in by_case.items() if r.status == "finished"}
    assert finished == {
        "sst2-tiny-training-finetune",
        "sst2-tiny-accuracy-fp32",
        "sst2-tiny-accuracy-int8",
        "squad-tiny-performance",
        "squad-tiny-latency",
    }
    # the batch sweep of one bench case: one row per batch size, under the case's row
    sweep = store.runs("case_name = 'squad-tiny-performance'")
    assert sorted(r.config["batch_size"] for r in sweep) == [1, 8]
    int8 = by_case["sst2-tiny-accuracy-int8"].flat()
    assert int8["precision"] == "int8" and int8["backend"] == "torch" and int8["relative_accuracy"] is not None
    assert (root / "runs" / "tiny" / "report.html").stat().st_size > 10_000


@pytest.mark.e2e
def test_a_rerun_skips_finished_cases_and_force_redoes_them(tiny_run, cache_dir: Path, capsys) -> None:
    root, _, first_wall = tiny_run
    path = root / "workload.yaml"
    capsys.readouterr()
    start = time.perf_counter()
    assert main(run_args(root, path, cache_dir)) == 1  # broken-accuracy fails again
    err = capsys.readouterr().err
    assert err.count("finished before with the same config") == 5
    assert time.perf_counter() - start < first_wall / 2
    rows_before = len(ResultsStore(root / "store.sqlite").runs())
    assert main(run_args(root, path, cache_dir, "-k", "accuracy-fp32", "--force")) == 0
    err = capsys.readouterr().err
    assert "sst2-tiny-accuracy-fp32: finished in" in err  # rerun, though it had finished
    assert len(ResultsStore(root / "store.sqlite").runs()) > rows_before


@pytest.mark.e2e
def test_report_formats_filters_and_compare(tiny_run, tmp_path: Path, capsys) -> None:
    root, _, _ = tiny_run
    store = ["--store", str(root / "store.sqlite")]
    capsys.readouterr()
    assert main(["report", *store, "--workload", "tiny", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["Mode"] for r in rows} == {"training", "accuracy", "performance"}
    assert all(set(r) >= {"Model", "BatchSize", "Precision", "samples/s", "p90 ms", "relative accuracy"} for r in rows)
    assert (
        main(["report", *store, "--where", "precision=int8", "--format", "csv", "--output", str(tmp_path / "k.csv")])
        == 0
    )
    lines = (tmp_path / "k.csv").read_text().splitlines()
    assert lines[0].startswith("Model,Task,Mode") and len(lines) >= 2 and all("int8" in line for line in lines[1:])
    assert main(["report", *store, "--workload", "tiny", "--last", "2", "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out.strip().splitlines()
    assert markdown[0].startswith("| Model |") and len(markdown) == 4
    # two sets of the same configurations: the first and second run of one case
    fp32 = [r for r in ResultsStore(root / "store.sqlite").runs("case_name = 'sst2-tiny-accuracy-fp32'")]
    assert len(fp32) >= 2
    assert main(["report", *store, "--compare", fp32[0].uid[:10], fp32[-1].uid[:10], "--format", "json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert len(compared) == 1 and compared[0]["accuracy B/A"] == pytest.approx(1.0, abs=0.1)


def _chromium() -> tuple[str, str]:
    """The Chromium and ChromeDriver on this machine's PATH; a clear failure naming what to install otherwise."""
    browser = next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, found in (("chromium", browser), ("chromium-driver", driver)) if found is None]
    assert not missing, f"the HTML test drives a real browser: install {' and '.join(missing)} (see README, Set up)"
    return str(browser), str(driver)


@pytest.mark.e2e
def test_html_report_renders_in_a_real_browser(tiny_run, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    root, _, _ = tiny_run
    page = tmp_path / "report.html"
    assert main(["report", "--store", str(root / "store.sqlite"), "--html", str(page), "--format", "json"]) == 0
    browser, driver_path = _chromium()
    options = Options()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(page.as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        figures = driver.find_elements("css selector", "figure[data-plot]")
        # the roof plot needs a quiet GEMM roof, which a busy machine never measures (test_bench checks both cases)
        quiet_roof = any(
            isinstance(r.flat().get("roof_fraction"), float) for r in ResultsStore(root / "store.sqlite").runs()
        )
        assert {f.get_attribute("data-plot") for f in figures} == {
            "throughput",
            "accuracy",
            "latency",
            "training",
            *(("roof",) if quiet_roof else ()),
            "frontier",  # the FP32 and INT8 paths of the fine-tuned model: F1 against samples/s
        }
        driver.set_window_size(1400, 1000)
        for figure in figures:
            svg = figure.find_element("css selector", "svg")
            assert svg.size["width"] > 400 and svg.size["height"] > 150
            assert len(svg.find_elements("css selector", "path")) > 5  # drawn, not an empty frame
            numbers = figure.find_element("xpath", "./following-sibling::details")  # the numbers, one click away
            numbers.find_element("css selector", "summary").click()
            assert len(numbers.find_elements("css selector", "tbody tr")) >= 1
        rows = [figure.location["y"] for figure in figures]
        assert len(set(rows)) < len(rows)  # at 1400 px plots sit side by side, not one per screen
        assert "Iluvatar CoreX ixRT model zoo" in driver.page_source  # their KPIs, labelled as theirs
        assert driver.execute_script("return document.querySelectorAll('script, link[href^=http]').length") == 0
    finally:
        driver.quit()


@pytest.mark.e2e
def test_resume_after_the_run_is_killed(tmp_path: Path, cache_dir: Path) -> None:
    text = TINY.split("  - name: sst2-tiny-accuracy")[0].replace("max_steps: 15", "max_steps: 24\n      save_steps: 4")
    path = write(tmp_path, text)
    argv = [sys.executable, "-m", "bertbench", *run_args(tmp_path, path, cache_dir)]
    env, marker = hold_at(tmp_path, "checkpoint", 8)
    orchestrator = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoints = tmp_path / "runs" / "tiny" / "sst2-tiny-training-finetune" / "checkpoints"
    wait_for_hold(marker, orchestrator)
    orchestrator.send_signal(signal.SIGTERM)  # the case is stopped too, and recorded as interrupted
    assert orchestrator.wait(timeout=120) == 143
    store = ResultsStore(tmp_path / "store.sqlite")
    assert [r.status for r in store.runs("case_name = 'sst2-tiny-training-finetune'")] == ["interrupted"]
    assert main(run_args(tmp_path, path, cache_dir)) == 0
    record = json.loads((checkpoints.parent / "metrics.json").read_text())
    assert record["steps"] == 24 and record["resumed_from_step"] == 8
    statuses = [r.status for r in store.runs("case_name = 'sst2-tiny-training-finetune'")]
    assert statuses == ["interrupted", "finished"]


@pytest.mark.e2e
def test_a_case_killed_without_a_word_is_recorded_failed(tmp_path: Path, cache_dir: Path) -> None:
    text = TINY.split("  - name: sst2-tiny-accuracy")[0].replace("max_steps: 15", "max_steps: 40\n      save_steps: 5")
    text += "  - name: corpus\n    job: build-corpus\n"
    text += "    options: {sst2: ['{data}/sst2/dev.tsv'], output: '{output}/c.txt'}\n"
    path = write(tmp_path, text)
    argv = [sys.executable, "-m", "bertbench", *run_args(tmp_path, path, cache_dir)]
    env, marker = hold_at(tmp_path, "checkpoint", 5)
    orchestrator = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_hold(marker, orchestrator)
    child = int(marker.read_text().split()[0])  # the case process, holding after its checkpoint of step 5
    os.kill(child, signal.SIGKILL)  # what the OOM killer does
    assert orchestrator.wait(timeout=240) == 1
    store = ResultsStore(tmp_path / "store.sqlite")
    killed = store.runs("case_name = 'sst2-tiny-training-finetune'")[0]
    assert killed.status == "failed" and killed.error.startswith("killed")
    assert store.runs("case_name = 'corpus'")[0].status == "finished"


# ---- the store ----------------------------------------------------------------------------------------------------


def test_a_store_of_the_previous_schema_is_upgraded_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (uid, command, status, started_at, config, metrics) VALUES "
        "('old1', 'eval', 'finished', '2026-01-01T00:00:00+00:00', '{\"task\": \"sst2\"}', '{\"accuracy\": 0.9}')"
    )
    db.commit()
    db.close()
    store = ResultsStore(path)
    assert store.schema_version == SCHEMA_VERSION == 5
    old = store.get("old1")
    assert old.metrics == {"accuracy": 0.9} and old.workload is None
    uid = store.start("eval", {}, workload="w", case_name="c", fingerprint="f")
    store.finish(uid, [RunRecord("eval", {"task": "sst2"}, {"accuracy": 0.8}, environment={"git_sha": "x"})])
    assert store.finished_case("w", "c", "f").metrics == {"accuracy": 0.8}


def _writer(path: str, worker: int, count: int) -> None:
    store = ResultsStore(path)
    for i in range(count):
        uid = store.start("bench", {"worker": worker, "i": i})
        records = [
            RunRecord("bench", {"worker": worker, "i": i, "part": p}, {"throughput": float(i)}, environment={})
            for p in range(2)
        ]
        store.finish(uid, records)


@pytest.mark.e2e
def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    context = mp.get_context("spawn")
    writers = [context.Process(target=_writer, args=(path, w, 25)) for w in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    runs = ResultsStore(path).runs()
    assert len(runs) == 4 * 25 * 2 and len({r.uid for r in runs}) == len(runs)
    seen = sorted((r.config["worker"], r.config["i"], r.config["part"]) for r in runs)
    assert seen == sorted((w, i, p) for w in range(4) for i in range(25) for p in range(2))
    assert all(r.status == "finished" for r in runs)


@pytest.mark.e2e
def test_results_import_loads_old_metrics_files_once(tiny_run, tmp_path: Path) -> None:
    root, _, _ = tiny_run
    store = str(tmp_path / "imported.sqlite")
    assert main(["results", "import", str(root / "runs" / "tiny"), "--store", store]) == 0
    imported = ResultsStore(store).runs()
    assert len(imported) >= 6 and {r.command for r in imported} >= {"eval", "bench", "finetune"}
    assert all(r.environment.get("git_sha") for r in imported)
    assert main(["results", "import", str(root / "runs" / "tiny"), "--store", store]) == 0
    assert len(ResultsStore(store).runs()) == len(imported)


def test_regressions_are_flagged_against_the_best_earlier_run(tmp_path: Path, capsys) -> None:
    store = ResultsStore(tmp_path / "r.sqlite")
    config = {"task": "squad", "model": "m", "backend": "torch", "precision": "fp32", "batch_size": 32}
    for throughput in (100.0, 102.0, 101.0, 70.0):
        store.add(RunRecord("bench", config, {"throughput": throughput}, environment={"git_sha": "x"}))
    assert main(["report", "--store", str(tmp_path / "r.sqlite"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    flagged = [r for r in rows if "regression" in r["notes"]]
    assert len(flagged) == 1 and flagged[0]["samples/s"] == 70.0
    assert "regression" in captured.err


@pytest.mark.slow
def test_the_default_workload_from_a_fresh_cache(tmp_path: Path) -> None:
    """`bertbench run` as a new user runs it (~6 min here): every case finishes, accuracy comes from trained
    weights, INT8 keeps the guard, the SQuAD rows are speed only, and a second run skips everything."""
    argv = run_args(tmp_path, "default", tmp_path / "cache")
    assert main(argv) == 0
    store = ResultsStore(tmp_path / "store.sqlite")
    cases = {r.case_name: r.flat() for r in store.runs("workload = 'default' AND parent_uid IS NULL")}
    assert len(cases) == 8 and all(r["status"] == "finished" for r in cases.values())
    assert cases["sst2-minilm-accuracy-fp32"]["accuracy"] > 0.8
    for name in ("sst2-minilm-accuracy-int8-dynamic", "sst2-minilm-accuracy-int8-static"):
        assert cases[name]["relative_accuracy"] > 0.97 and cases[name]["random_weights"] is False
    assert all("f1" not in r for name, r in cases.items() if name.startswith("squad"))
    start = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - start < 120
