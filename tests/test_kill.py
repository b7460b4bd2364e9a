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

from .conftest import DATA, SQUAD_TRAIN, hold_at, wait_for_hold
from .test_pretrain import pretrain_args

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

KILL_SEED = 20261124  # the random kill points are drawn from this seed, so a failure can be replayed


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bertbench", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**(env or os.environ), "OMP_NUM_THREADS": "1"},
    )


def completed_checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(p for p in root.glob("step-*") if (p / "trainer_state.pt").exists()) if root.is_dir() else []


def kill_at_hold(proc: subprocess.Popen, marker: Path) -> None:
    """SIGKILL `proc` once it holds at its chosen point (conftest.hold_at)."""
    wait_for_hold(marker, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


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
    rng = random.Random(KILL_SEED)
    first, second = sorted(rng.sample(range(2, 40), 2))

    # Kill 1: inside a checkpoint write (its files written to the temporary directory, not yet renamed).
    env, marker = hold_at(tmp_path, "checkpoint-write", first)
    kill_at_hold(start(finetune_args(out, cache_dir), env), marker)
    assert any((out / "checkpoints").glob(".step-*.tmp")), "the kill landed inside a checkpoint write"
    assert completed_checkpoints(out)[-1].name == f"step-{first - 1:08d}"

    # Kill 2: at a random step of the resumed run, after it has written a checkpoint of its own.
    env, marker = hold_at(tmp_path, "checkpoint", second)
    kill_at_hold(start(finetune_args(out, cache_dir, "--resume"), env), marker)
    assert completed_checkpoints(out)[-1].name == f"step-{second:08d}"
    assert not (out / "metrics.json").exists()

    assert main(finetune_args(out, cache_dir, "--resume")) == 0
    assert not list((out / "checkpoints").glob(".step-*")), "leftovers of the killed writes are cleared"
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == second
    assert max_difference(reference, out) <= 1e-6


def test_pretrain_killed_at_a_random_point_resumes_exactly(tmp_path: Path, cache_dir: Path, small_corpora) -> None:
    extra = ("--max-steps", "30", "--save-steps", "3", "--threads", "1", "--dropout", "0.1")
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main(pretrain_args(reference, cache_dir, small_corpora, *extra)) == 0

    step = random.Random(KILL_SEED + 1).choice(range(3, 30, 3))
    env, marker = hold_at(tmp_path, "checkpoint", step)
    kill_at_hold(start(pretrain_args(out, cache_dir, small_corpora, *extra), env), marker)
    assert not (out / "metrics.json").exists()
    assert main(pretrain_args(out, cache_dir, small_corpora, *extra, "--resume")) == 0
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == step
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

    first_step, second_step = sorted(rng.sample(range(1, 40), 2))

    # Kill 1: the parent, while its case holds after a random step's checkpoint.
    env, marker = hold_at(tmp_path, "checkpoint", first_step)
    first = start(run_argv(killed, workload, cache_dir), env)
    kill_at_hold(first, marker)
    assert wait_until_gone(str(killed)) == [], "the case outlived its killed parent"
    assert not (case / "metrics.json").exists(), "the case went on after its parent was killed"

    # Kill 2: the rerun's parent, after the resumed case has written a checkpoint of its own.
    env, marker = hold_at(tmp_path, "checkpoint", second_step)
    second = start(run_argv(killed, workload, cache_dir), env)
    kill_at_hold(second, marker)
    assert completed_checkpoints(case)[-1].name == f"step-{second_step:08d}"
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
    env, marker = hold_at(tmp_path, "checkpoint", 2)  # the first run holds its folder, training, until released
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_for_hold(marker, first)
    busy = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert busy.returncode == 75 and f"pid {first.pid}" in busy.stderr
    said = tmp_path / "waiting.err"
    with open(said, "w") as err:
        waiting = subprocess.Popen([*argv, "--wait"], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while "waiting for it to end" not in said.read_text() and waiting.poll() is None:
            assert time.monotonic() < deadline, "the second run never said it waits"
            time.sleep(0.05)
        marker.unlink()  # release the first run
        assert first.wait(timeout=600) == 0 and waiting.wait(timeout=600) == 0
    assert "finished before" in said.read_text()
    store = ResultsStore(tmp_path / "store.sqlite")
    for case in ("train", "corpus"):
        assert len(store.runs("case_name = ? AND status = 'finished'", (case,))) == 1
