"""SIGKILL at random points, including in the middle of a checkpoint write: every resumed run ends with the
weights of an uninterrupted one (fine-tuning and pretraining)."""

from __future__ import annotations

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

from .conftest import SQUAD_TRAIN
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
