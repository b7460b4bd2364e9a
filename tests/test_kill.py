"""SIGKILL at random points, including in the middle of a checkpoint write: every resumed run ends with the
weights of an uninterrupted one (fine-tuning and pretraining)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bertbench.cli import main
from bertbench.results.store import ResultsStore

from .conftest import DATA, SQUAD_TRAIN
from .test_pretrain import pretrain_args

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

KILL_SEED = 20261124  # the random kill points are drawn from this seed, so a failure can be replayed


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertbench", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def completed_checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / "trainer_state.pt").exists()) if root.is_dir() else []


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return True
        time.sleep(0.0005)
    proc.wait(timeout=60)
    return False


def max_difference(a: Path, b: Path) -> float:
    expected, got = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert expected.keys() == got.keys()
    return max(float((expected[k] - got[k]).abs().max()) for k in expected)


def finetune_args(out: Path, cache_dir: Path, *extra: str) -> list[str]:
    where = ["--train", str(SQUAD_TRAIN), "--max-train-samples", "120", "--output-dir", str(out)]
    shape = ["--max-seq-length", "128", "--doc-stride", "64", "--batch-size", "4", "--grad-accum", "2"]
    rest = ["--max-steps", "40", "--save-steps", "1", "--keep-checkpoints", "2", "--learning-rate", "5e-4"]
    local = ["--cache-dir", str(cache_dir), "--threads", "1", "--no-progress"]
    return ["finetune", "squad", "--model", "bert-tiny", *where, *shape, *rest, *local, *extra]


def test_finetune_killed_mid_checkpoint_and_at_a_random_point_resumes_exactly(tmp_path: Path, cache_dir: Path) -> None:
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(finetune_args(reference, cache_dir)) == 0

    # Kill 1: while a checkpoint is being written (its temporary directory exists, not yet renamed).
    def writing() -> bool:
        return bool(completed_checkpoints(out)) and any((out / "checkpoints").glob(".step-*.tmp"))

    assert kill_when(start(finetune_args(out, cache_dir)), writing), "the run finished before the kill"
    assert any((out / "checkpoints").glob(".step-*.tmp")), "the kill landed inside a checkpoint write"
    first_kill = completed_checkpoints(out)[-1].name

    # Kill 2: at a random moment of the resumed run, after it has written a checkpoint of its own.
    delay = random.Random(KILL_SEED).uniform(0.2, 1.5)
    resumed = start(finetune_args(out, cache_dir, "--resume"))
    began = time.monotonic()

    def later() -> bool:
        newest = completed_checkpoints(out)
        return bool(newest) and newest[-1].name > first_kill and time.monotonic() - began > delay

    assert kill_when(resumed, later), "the resumed run finished before the second kill"
    assert not (out / "metrics.json").exists()

    assert main(finetune_args(out, cache_dir, "--resume")) == 0
    assert not list((out / "checkpoints").glob(".step-*")), "leftovers of the killed writes are cleared"
    assert max_difference(reference, out) <= 1e-6


def test_pretrain_killed_at_a_random_point_resumes_exactly(tmp_path: Path, cache_dir: Path, small_corpora) -> None:
    extra = ("--max-steps", "30", "--save-steps", "3", "--threads", "1", "--dropout", "0.1")
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(pretrain_args(reference, cache_dir, small_corpora, *extra)) == 0

    delay = random.Random(KILL_SEED + 1).uniform(0.0, 1.0)
    proc = start(pretrain_args(out, cache_dir, small_corpora, *extra))
    seen: dict[str, float] = {}

    def after_first_checkpoint() -> bool:
        if completed_checkpoints(out):
            seen.setdefault("at", time.monotonic())
            return time.monotonic() - seen["at"] > delay
        return False

    assert kill_when(proc, after_first_checkpoint), "the run finished before the kill"
    assert not (out / "metrics.json").exists()
    assert main(pretrain_args(out, cache_dir, small_corpora, *extra, "--resume")) == 0
    assert max_difference(reference, out) <= 1e-6


# ---- `bertbench run` killed: its case dies with it, the rerun finishes every case exactly once ----------------------

RUN_WORKLOAD = """
name: killme
description: a training case and a case that needs it, for kill tests
cases:
  - name: train
    job: finetune
    task: squad
    options:
      model: bert-tiny
      train: "{data}/squad/train.json"
      max_train_samples: 120
      max_seq_length: 128
      doc_stride: 64
      batch_size: 4
      grad_accum: 2
      max_steps: 40
      save_steps: 1
      keep_checkpoints: 2
      learning_rate: 5.0e-4
      threads: 1
      log_every: 1
  - name: corpus
    job: build-corpus
    needs: [train]
    options: {sst2: ["{data}/sst2/dev.tsv"], output: "{output}/corpus.txt"}
"""


def run_argv(root: Path, workload: Path, cache_dir: Path) -> list[str]:
    args = ["run", str(workload), "--data-dir", str(DATA), "--output-root", str(root / "runs")]
    return [*args, "--store", str(root / "store.sqlite"), "--cache-dir", str(cache_dir), "--no-progress"]


def case_processes(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (the run's own output root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "bertbench" in command:
                found.append(int(entry.name))
    return found


def wait_until_gone(marker: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and case_processes(marker):
        time.sleep(0.1)
    return case_processes(marker)


def test_run_killed_twice_then_rerun_finishes_each_case_once_with_the_uninterrupted_weights(
    tmp_path: Path, cache_dir: Path
) -> None:
    workload = tmp_path / "killme.yaml"
    workload.write_text(RUN_WORKLOAD)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert main(run_argv(reference, workload, cache_dir)) == 0
    case = killed / "runs" / "killme" / "train"
    rng = random.Random(KILL_SEED + 2)

    # Kill 1: the parent, at a random moment after the case has started training (before or after a checkpoint).
    first = subprocess.Popen(
        [sys.executable, "-m", "bertbench", *run_argv(killed, workload, cache_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    delay = rng.uniform(0.0, 2.0)
    seen: dict[str, float] = {}

    def training() -> bool:
        if (case / "train_log.jsonl").exists():
            seen.setdefault("at", time.monotonic())
            return time.monotonic() - seen["at"] > delay
        return False

    assert kill_when(first, training), "the run finished before the first kill"
    assert wait_until_gone(str(killed)) == [], "the case outlived its killed parent"
    assert not (case / "metrics.json").exists(), "the case went on after its parent was killed"

    # Kill 2: the rerun's parent, after the resumed case has written a checkpoint of its own.
    before = completed_checkpoints(case)[-1].name if completed_checkpoints(case) else ""
    second = subprocess.Popen(
        [sys.executable, "-m", "bertbench", *run_argv(killed, workload, cache_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def newer_checkpoint() -> bool:
        newest = completed_checkpoints(case)
        return bool(newest) and newest[-1].name > before and not (case / "metrics.json").exists()

    assert kill_when(second, newer_checkpoint), "the run finished before the second kill"
    assert wait_until_gone(str(killed)) == [], "the case outlived its killed parent"
    assert not (case / "metrics.json").exists(), "the case went on after its parent was killed"

    assert main(run_argv(killed, workload, cache_dir)) == 0
    store = ResultsStore(killed / "store.sqlite")
    rows = store.runs("case_name = 'train'")
    assert [r.status for r in rows].count("finished") == 1
    assert not [r for r in store.runs() if r.status == "running"], "a row of a killed process stayed running"
    assert {r.status for r in rows} <= {"finished", "interrupted"}
    entries = [json.loads(line) for line in (case / "train_log.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in entries if "step" in entry]
    assert steps == sorted(set(steps)) and steps[-1] == 40, "steps duplicated or missing in train_log.jsonl"
    assert max_difference(reference / "runs" / "killme" / "train", case) <= 1e-6
    corpus = store.runs("case_name = 'corpus' AND status = 'finished'")
    assert len(corpus) == 1


def test_two_runs_of_one_workload_never_run_a_case_twice(tmp_path: Path, cache_dir: Path) -> None:
    workload = tmp_path / "killme.yaml"
    workload.write_text(RUN_WORKLOAD.replace("max_steps: 40", "max_steps: 12"))
    argv = [sys.executable, "-m", "bertbench", *run_argv(tmp_path, workload, cache_dir)]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "runs" / "killme" / ".lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.stat().st_size):
        time.sleep(0.05)
    busy = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert busy.returncode == 75 and f"pid {first.pid}" in busy.stderr
    waiting = subprocess.run([*argv, "--wait"], capture_output=True, text=True, timeout=600)
    assert first.wait(timeout=600) == 0 and waiting.returncode == 0
    assert "waiting for it to end" in waiting.stderr and "finished before" in waiting.stderr
    store = ResultsStore(tmp_path / "store.sqlite")
    for case in ("train", "corpus"):
        assert len(store.runs("case_name = ? AND status = 'finished'", (case,))) == 1
