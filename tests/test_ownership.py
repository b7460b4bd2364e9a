"""The main job never loses or mixes results: names are identifiers, a folder has one owner, one `run` of a workload
at a time, a store that survives contention and damage, bounded work, a cache that heals."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertbench.cache import MANIFEST, Cache
from bertbench.cli import main
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore

from .conftest import DATA

CORPUS_CASE = """
  - name: {name}
    job: build-corpus
    options: {{sst2: ["{{data}}/sst2/dev.tsv"], output: "{{output}}/corpus.txt"}}
"""


def workload(tmp_path: Path, text: str, file: str = "w.yaml") -> Path:
    path = tmp_path / file
    path.write_text(text)
    return path


def corpus_workload(tmp_path: Path, *names: str, workload_name: str = "w") -> Path:
    cases = "".join(CORPUS_CASE.format(name=name) for name in names)
    return workload(tmp_path, f"name: {workload_name}\ndescription: d\ncases:{cases}")


def run(tmp_path: Path, path: Path, *extra: str) -> int:
    argv = ["run", str(path), "--data-dir", str(DATA), "--output-root", str(tmp_path / "runs")]
    return main([*argv, "--store", str(tmp_path / "s.sqlite"), "--no-progress", *extra])


def error_lines(capsys: pytest.CaptureFixture) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]


# ---- names are identifiers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("/tmp/escape", "not an identifier"),
        ("../escape", "not an identifier"),
        ("x/", "not an identifier"),
        ("a b", "not an identifier"),
        (".hidden", "not an identifier"),
        ("logs", "reserved"),
        ("REPORT.html", "reserved"),
        ("x" * 121, "more than 120"),
    ],
)
def test_a_case_name_that_is_a_path_or_reserved_is_refused(tmp_path: Path, capsys, case: str, expected: str) -> None:
    path = corpus_workload(tmp_path, json.dumps(case))
    assert run(tmp_path, path) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0]
    assert not (tmp_path / "runs").exists() and not Path("/tmp/escape").exists()


@pytest.mark.parametrize("name", ["../up", "/abs", "a/b", "", "logs"])
def test_a_workload_name_that_is_a_path_is_refused(tmp_path: Path, capsys, name: str) -> None:
    path = corpus_workload(tmp_path, "ok", workload_name=json.dumps(name))
    assert run(tmp_path, path) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "workload.name" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_names_must_differ_by_more_than_letter_case(tmp_path: Path, capsys) -> None:
    path = corpus_workload(tmp_path, "Corpus", "corpus")
    assert run(tmp_path, path) == 2
    assert "differs from Corpus only in letter case" in error_lines(capsys)[0]


def test_a_huge_matrix_is_refused_at_once(tmp_path: Path, capsys) -> None:
    axis = "[" + ", ".join(str(i) for i in range(1000)) + "]"
    text = "name: big\ndescription: d\ncases:\n  - name: c\n    job: eval\n    task: sst2\n"
    text += f"    matrix: {{batch_size: {axis}, seed: {axis}}}\n"
    start = time.perf_counter()
    assert main(["run", str(workload(tmp_path, text)), "--list", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert time.perf_counter() - start < 10
    assert "more than 10000 cases" in error_lines(capsys)[0]


def test_processes_beyond_the_cores_need_oversubscribe(tmp_path: Path, capsys) -> None:
    text = "name: p\ndescription: d\ncases:\n  - name: c\n    job: pretrain\n    processes: 1000\n"
    text += "    options: {model: bert-tiny, corpus: ['{data}/sst2/dev.tsv']}\n"
    path = workload(tmp_path, text)
    assert run(tmp_path, path, "--dry-run") == 2
    assert "1000 processes is more than the" in error_lines(capsys)[0]
    assert run(tmp_path, path, "--dry-run", "--oversubscribe") == 0
    # beyond any machine, --oversubscribe or not
    path.write_text(text.replace("processes: 1000", "processes: 1000000"))
    assert run(tmp_path, path, "--dry-run", "--oversubscribe") == 2
    assert "processes: must be between 1 and 1024" in error_lines(capsys)[0]


def test_an_empty_data_dir_or_a_missing_file_is_exit_2_before_any_case(tmp_path: Path, capsys) -> None:
    path = corpus_workload(tmp_path, "corpus")
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["run", str(path), "--data-dir", str(empty), "--output-root", str(tmp_path / "runs")]
    assert main([*argv, "--store", str(tmp_path / "s.sqlite"), "--no-progress"]) == 2
    assert "holds neither squad/ nor sst2/" in error_lines(capsys)[0]
    data = tmp_path / "data"
    (data / "sst2").mkdir(parents=True)
    argv[3] = str(data)
    assert main([*argv, "--store", str(tmp_path / "s.sqlite"), "--no-progress"]) == 2
    assert "sst2/dev.tsv does not exist" in error_lines(capsys)[0]
    assert not (tmp_path / "runs").exists()


def test_a_case_writes_only_in_its_own_folder(tmp_path: Path, capsys) -> None:
    text = "name: w\ndescription: d\ncases:\n  - name: c\n    job: build-corpus\n"
    text += f"    options: {{sst2: ['{{data}}/sst2/dev.tsv'], output: '{tmp_path}/elsewhere.txt'}}\n"
    assert run(tmp_path, workload(tmp_path, text)) == 2
    assert "outside the case's folder" in error_lines(capsys)[0]
    assert not (tmp_path / "elsewhere.txt").exists()


# ---- a folder has one owner -------------------------------------------------------------------------------------


def test_run_never_replaces_a_folder_it_did_not_make(tmp_path: Path, capsys) -> None:
    path = corpus_workload(tmp_path, "corpus")
    folder = tmp_path / "runs" / "w" / "corpus"
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("mine")
    assert run(tmp_path, path) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and str(folder) in lines[0] and "no bertbench run" in lines[0]
    assert (folder / "precious.txt").read_text() == "mine" and not (folder / "corpus.txt").exists()
    # a folder marked as another case's is refused too
    (folder / "precious.txt").unlink()
    (folder / ".bertbench-case.json").write_text(json.dumps({"workload": "w", "case": "other"}))
    (folder / "corpus.txt").write_text("other's")
    assert run(tmp_path, path) == 1
    assert "case other of workload w" in error_lines(capsys)[0]
    assert (folder / "corpus.txt").read_text() == "other's"


@pytest.mark.e2e
def test_run_redoes_its_own_folder_and_build_corpus_keeps_inputs_and_strangers(tmp_path: Path, capsys) -> None:
    path = corpus_workload(tmp_path, "corpus")
    assert run(tmp_path, path) == 0
    written = tmp_path / "runs" / "w" / "corpus" / "corpus.txt"
    assert written.stat().st_size > 1000
    assert run(tmp_path, path, "--force") == 0  # its own folder: redone
    stranger = tmp_path / "stranger.txt"
    stranger.write_text("keep")
    sst2 = DATA / "sst2" / "dev.tsv"
    capsys.readouterr()
    assert main(["build-corpus", "--sst2", str(sst2), "--output", str(stranger)]) == 1
    assert "pass --overwrite" in error_lines(capsys)[0] and stranger.read_text() == "keep"
    copy = tmp_path / "dev.tsv"
    copy.write_bytes(sst2.read_bytes())
    assert main(["build-corpus", "--sst2", str(copy), "--output", str(copy), "--overwrite"]) == 2
    assert "--output is an input (--sst2" in error_lines(capsys)[0] and copy.read_bytes() == sst2.read_bytes()


# ---- one writer at a time ---------------------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from bertbench.locking import exclusive
with exclusive(Path(sys.argv[1]), "test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.mark.e2e
def test_a_second_run_of_a_workload_says_who_holds_it_or_waits(tmp_path: Path, capsys) -> None:
    path = corpus_workload(tmp_path, "corpus")
    lock = tmp_path / "runs" / "w" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock), "3"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert run(tmp_path, path) == 75
    lines = error_lines(capsys)
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "--wait" in lines[0]
    start = time.perf_counter()
    assert run(tmp_path, path, "--wait") == 0  # waits for the holder, then runs
    assert time.perf_counter() - start > 1.0
    holder.wait(timeout=30)
    finished = ResultsStore(tmp_path / "s.sqlite").runs("case_name = 'corpus' AND status = 'finished'")
    assert len(finished) == 1


# ---- the store --------------------------------------------------------------------------------------------------


def test_report_on_a_missing_store_creates_nothing(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "typo" / "x.sqlite"
    assert main(["report", "--store", str(missing)]) == 1
    assert "no results store here" in error_lines(capsys)[0]
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("bytes", "not a readable results store"),
        ("foreign", "a SQLite file of another program"),
        ("newer", "newer than this bertbench understands"),
    ],
)
def test_a_damaged_foreign_or_newer_store_is_one_line_naming_it(
    tmp_path: Path, capsys, damage: str, expected: str
) -> None:
    store = tmp_path / "s.sqlite"
    if damage == "bytes":
        store.write_bytes(os.urandom(4096))
    else:
        db = sqlite3.connect(store)
        db.execute("CREATE TABLE other (x INTEGER)" if damage == "foreign" else "PRAGMA user_version = 99")
        db.commit()
        db.close()
    before = store.read_bytes()
    assert main(["report", "--store", str(store)]) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and str(store) in lines[0] and expected in lines[0]
    assert store.read_bytes() == before


def test_one_unreadable_row_is_left_out_with_its_uid(tmp_path: Path, capsys) -> None:
    store = ResultsStore(tmp_path / "s.sqlite")
    good = store.add(RunRecord("eval", {"task": "sst2", "model": "m"}, {"accuracy": 0.9}, environment={}))
    bad = store.add(RunRecord("eval", {"task": "sst2", "model": "n"}, {"accuracy": 0.8}, environment={}))
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("UPDATE runs SET metrics = '{not json' WHERE uid = ?", (bad,))
    db.commit()
    db.close()
    assert main(["report", "--store", str(tmp_path / "s.sqlite"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert [row["Model"] for row in json.loads(captured.out)] == ["m"]
    assert bad in captured.err and good not in captured.err


def test_a_result_outlives_a_store_locked_past_its_timeout(tmp_path: Path, capsys, monkeypatch) -> None:
    store_path = tmp_path / "s.sqlite"
    ResultsStore(store_path)
    monkeypatch.setenv("BERTBENCH_STORE_TIMEOUT_S", "0.2")
    locker = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
    output = tmp_path / "corpus.txt"

    def lock_when_the_corpus_is_written(*args, **kwargs):  # the store is busy exactly when the job finishes
        result = original(*args, **kwargs)
        locker.execute("BEGIN EXCLUSIVE")
        return result

    import bertbench.jobs.corpus as corpus_job

    original = corpus_job.build_corpus
    monkeypatch.setattr(corpus_job, "build_corpus", lock_when_the_corpus_is_written)
    argv = ["build-corpus", "--sst2", str(DATA / "sst2" / "dev.tsv"), "--output", str(output), "--store"]
    assert main([*argv, str(store_path)]) == 0
    assert "enters the store the next time it is opened" in capsys.readouterr().err
    pending = list((tmp_path / "s.sqlite.pending").glob("*.json"))
    assert len(pending) == 1 and output.exists()
    locker.execute("ROLLBACK")
    locker.close()
    runs = ResultsStore(store_path).runs()  # opening imports what waited
    assert [(r.command, r.status) for r in runs] == [("build-corpus", "finished")]
    assert runs[0].metrics["documents"] > 100 and not (tmp_path / "s.sqlite.pending").exists()


def test_a_running_row_whose_process_is_gone_is_marked_interrupted(tmp_path: Path) -> None:
    store_path = tmp_path / "s.sqlite"
    script = "import sys; from bertbench.results.store import ResultsStore; "
    script += "print(ResultsStore(sys.argv[1]).start('eval', {}))"
    uid = subprocess.run([sys.executable, "-c", script, str(store_path)], capture_output=True, text=True).stdout
    alive = ResultsStore(store_path).start("eval", {})  # this process: still running
    rows = {r.uid: r for r in ResultsStore(store_path).runs()}
    assert rows[uid.strip()].status == "interrupted" and "is gone" in rows[uid.strip()].error
    assert rows[alive].status == "running"


def test_results_import_knows_a_folder_by_its_resolved_path(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "old" / "run1"
    RunRecord("eval", {"task": "sst2"}, {"accuracy": 0.5}, environment={"git_sha": "x"}).write(folder)
    store = str(tmp_path / "i.sqlite")
    monkeypatch.chdir(tmp_path)
    assert main(["results", "import", "old", "--store", store]) == 0
    assert main(["results", "import", str(tmp_path / "old"), "--store", store]) == 0
    assert main(["results", "import", "old/run1/metrics.json", "--store", store]) == 0
    assert len(ResultsStore(store).runs()) == 1


def test_a_comparison_with_different_metrics_renders_as_csv() -> None:
    from bertbench.results.formatting import render

    text = render([{"Model": "a", "f1 A": 1.0}, {"Model": "b", "accuracy A": 0.5}], "csv")
    assert text.splitlines() == ["Model,f1 A,accuracy A", "a,1.0,", "b,,0.5"]


# ---- bounded work -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--scenario", "server", "--target-qps", "0.0001"], "would run at least 640000 s"),
        (["--target-latency-ms", "1e30"], "more than an hour"),
        (["--env", "PYTHONHASHSEED=abc"], "PYTHONHASHSEED is 'random' or an integer"),
        (["--env", "1BAD=x"], "not an environment variable name"),
        (["--backend", "null", "--mode", "accuracy"], "--mode performance only"),
    ],
)
def test_unbounded_or_meaningless_bench_settings_are_refused_when_parsed(capsys, extra: list[str], expected: str):
    argv = ["bench", "squad", "--model", "no-such-model", "--data", "no-such.json", "--output-dir", "never"]
    assert main([*argv, *extra]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and expected in lines[0]
    assert not Path("never").exists()


# ---- the cache heals --------------------------------------------------------------------------------------------


def test_a_cache_entry_that_is_incomplete_or_a_loop_is_rebuilt(tmp_path: Path, capsys) -> None:
    cache = Cache(tmp_path)
    built = []

    def build(directory: Path) -> None:
        built.append(directory)
        (directory / "a.bin").write_bytes(b"x" * 10)

    entry, hit = cache.get_or_build("k", {"p": 1}, build)
    assert not hit
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["files"] = {}
    (entry / MANIFEST).write_text(json.dumps(manifest))  # a manifest that describes nothing
    assert cache.get_or_build("k", {"p": 1}, build) == (entry, False)
    (entry / "extra.bin").write_bytes(b"y")  # a file the manifest does not list
    assert cache.get_or_build("k", {"p": 1}, build)[1] is False
    import shutil

    shutil.rmtree(entry)
    entry.symlink_to(entry)  # a symlink loop where the entry should be
    again, hit = cache.get_or_build("k", {"p": 1}, build)
    assert not hit and again.is_dir() and not again.is_symlink() and (again / "a.bin").exists()
    assert len(built) == 4 and cache.rebuilt_corrupt == 3
    assert capsys.readouterr().err.count("incomplete or unreadable; rebuilding") == 3
    assert cache.get_or_build("k", {"p": 1}, build)[1] is True


def test_what_a_killed_cache_writer_left_is_cleared(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    kind = tmp_path / "onnx"
    leftover = kind / f".abc.{dead_pid}.x1y2.tmp"
    (leftover / "work").mkdir(parents=True)
    (leftover / "work" / "exported.onnx").write_bytes(b"half")
    live = kind / f".def.{os.getpid()}.z9.tmp"  # a writer of this very process: left alone
    live.mkdir()
    Cache(tmp_path).get_or_build("onnx", {"p": 1}, lambda d: (d / "m").write_bytes(b"m"))
    assert not leftover.exists() and live.exists()
