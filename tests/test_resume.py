"""A run killed after a checkpoint and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertbench.cli import main

from .conftest import SQUAD_TRAIN, hold_at, wait_for_hold

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

STEPS = 60


def finetune_args(out: Path, cache_dir: Path, *extra: str) -> list[str]:
    return [
        "finetune",
        "squad",
        "--model",
        "bert-tiny",
        "--train",
        str(SQUAD_TRAIN),
        "--max-train-samples",
        "120",
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--max-steps",
        str(STEPS),
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--save-steps",
        "4",
        "--learning-rate",
        "5e-4",
        "--threads",
        "1",
        "--no-progress",
        "--max-seq-length",
        "128",
        "--doc-stride",
        "64",
        *extra,
    ]


@pytest.mark.slow  # the default suite's kill test (test_kill.py) kills a finetune twice and resumes it exactly
def test_killed_run_resumes_to_identical_weights(tmp_path: Path, cache_dir: Path) -> None:
    # Dropout stays on: its RNG state is part of what a checkpoint must restore.
    reference = tmp_path / "uninterrupted"
    assert main(finetune_args(reference, cache_dir)) == 0

    interrupted = tmp_path / "interrupted"
    env, marker = hold_at(tmp_path, "checkpoint", 4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bertbench", *finetune_args(interrupted, cache_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**env, "OMP_NUM_THREADS": "1"},
    )
    wait_for_hold(marker, proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (interrupted / "metrics.json").exists()
    checkpoints = interrupted / "checkpoints"

    assert main(finetune_args(interrupted, cache_dir, "--resume")) == 0
    record = json.loads((interrupted / "metrics.json").read_text())
    assert record["resumed_from_step"] == 4 < STEPS
    expected = load_file(str(reference / "model.safetensors"))
    resumed = load_file(str(interrupted / "model.safetensors"))
    worst = max(float((expected[k] - resumed[k]).abs().max()) for k in expected)
    assert worst <= 1e-6
    # And the runs did train: weights moved away from the initial ones.
    initial = load_file(str(sorted(checkpoints.glob("step-*"))[0] / "model.safetensors"))
    assert any(not torch.equal(initial[k], resumed[k]) for k in initial)


def test_resume_with_changed_settings_is_refused(tmp_path: Path, cache_dir: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(finetune_args(out, cache_dir, "--max-steps", "4")) == 0
    capsys.readouterr()
    assert main(finetune_args(out, cache_dir, "--max-steps", "4", "--learning-rate", "1e-3", "--resume")) == 1
    err = capsys.readouterr().err
    assert "learning_rate" in err and "--resume" in err


def test_resume_on_a_different_cut_of_the_training_data_is_refused(tmp_path: Path, cache_dir: Path, capsys) -> None:
    """A trajectory's data order depends on how many samples it draws from: another --max-train-samples is another
    run, never a continuation (a workload whose cut changed resumed onto the wrong data before this check)."""
    out = tmp_path / "run"
    assert main(finetune_args(out, cache_dir, "--max-steps", "4")) == 0
    capsys.readouterr()
    assert main(finetune_args(out, cache_dir, "--max-steps", "4", "--max-train-samples", "48", "--resume")) == 1
    assert "training samples" in capsys.readouterr().err
