"""Shared fixtures: real data paths, the MiniLM tokenizer, a per-session cache, a tiny fine-tuned model."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from bertbench.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BERTBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
SQUAD_TRAIN = DATA / "squad" / "train.json"
MLCOMMONS = REPO.parent / "shared" / "mlcommons-inference"  # MLCommons' own tools, unmodified (PROVENANCE.md)
SQUAD_DEV = DATA / "squad" / "dev.json"


def hold_at(tmp_path: Path, point: str, count: int) -> tuple[dict[str, str], Path]:
    """(environment, marker): a bertbench process started with the environment stops at the `count`th time it
    reaches `point` (bertbench.holds) and waits there, until killed or until the marker is removed. Kill tests kill
    at a chosen point this way, never by racing the clock or the file system."""
    marker = tmp_path / f"hold-{point}-{count}"
    marker.unlink(missing_ok=True)
    return {**os.environ, "BERTBENCH_HOLD_AT": f"{point}:{count}", "BERTBENCH_HOLD_FILE": str(marker)}, marker


def wait_for_hold(marker: Path, *processes: subprocess.Popen, timeout: float = 300) -> None:
    """Until the process holding at `marker`'s point says so; an error if every process ended first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if all(process.poll() is not None for process in processes):
            raise AssertionError(f"the run ended before reaching its hold point ({marker.name})")
        if time.monotonic() > deadline:
            raise AssertionError(f"no hold at {marker.name} within {timeout:.0f} s")
        time.sleep(0.02)


OPT_IN_MARKERS = ("slow", "gpu", "frameworks")  # run only when `-m` names them


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out slow and gpu tests unless the -m expression names them (`pytest -m slow`, `-m "gpu or slow"`)."""
    expression = config.getoption("markexpr") or ""
    skipped = [m for m in OPT_IN_MARKERS if m not in expression]
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.get_closest_marker(m) for m in skipped) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every command records into a results store of this session, never the user's; the default cache (where
    the machine's GEMM roof is kept, measured once a session) is the session's too."""
    data_home = tmp_path_factory.mktemp("xdg-data")
    os.environ["XDG_DATA_HOME"] = str(data_home)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    return data_home / "bertbench" / "results.sqlite"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the whole session (features are built once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tokenizer():
    """The uncased WordPiece tokenizer shipped with MiniLM (also the presets' vocabulary)."""
    from bertbench.models.loading import minilm_directory
    from bertbench.models.tokenizer import WordPieceTokenizer

    return WordPieceTokenizer.from_directory(minilm_directory())


@pytest.fixture(scope="session")
def tiny_squad_model(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """bert-tiny fine-tuned for 40 steps on the first 200 questions of the real train file (CLI, in-process)."""
    out = tmp_path_factory.mktemp("tiny-squad")
    code = main(
        [
            "finetune",
            "squad",
            "--model",
            "bert-tiny",
            "--train",
            str(SQUAD_TRAIN),
            "--max-train-samples",
            "200",
            "--output-dir",
            str(out),
            "--overwrite",
            "--cache-dir",
            str(cache_dir),
            "--max-steps",
            "40",
            "--batch-size",
            "8",
            "--learning-rate",
            "1e-3",
            "--log-every",
            "1",
            "--threads",
            "2",
            "--no-progress",
            "--max-seq-length",
            "256",
        ]
    )
    assert code == 0
    return out


def two_single_core_instances() -> tuple[list[str], list[list[int]]]:
    """bench options for two one-core instances on this machine, and the cores they are pinned to: the first two
    cores this process may use (one core shared, with --oversubscribe, on a one-core machine)."""
    from bertbench.hardware import allowed_cores

    cores = allowed_cores()
    options = ["--instances", "2", "--cores-per-instance", "1", *(["--oversubscribe"] if len(cores) < 2 else [])]
    return options, [[cores[0]], [cores[1 % len(cores)]]]


SST2_TRAIN = DATA / "sst2" / "train.tsv"
SST2_DEV = DATA / "sst2" / "dev.tsv"


@pytest.fixture(scope="session")
def small_corpora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A pretraining corpus (SQuAD dev contexts) and a held-out one (SST-2 dev sentences), built by the CLI."""
    root = tmp_path_factory.mktemp("corpora")
    train, held_out = root / "train.txt", root / "eval.txt"
    assert main(["build-corpus", "--squad", str(SQUAD_DEV), "--output", str(train)]) == 0
    assert main(["build-corpus", "--sst2", str(SST2_DEV), "--output", str(held_out)]) == 0
    return train, held_out


@pytest.fixture(scope="session")
def sst2_model(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """MiniLM fine-tuned on 960 real SST-2 sentences for 60 steps (~0.8 dev accuracy): a model with margins,
    so that precision comparisons mean something. The pretrained MiniLM learns this fast; bert-tiny would not."""
    out = tmp_path_factory.mktemp("sst2-minilm")
    args = "finetune sst2 --model minilm-l6 --max-train-samples 960 --max-eval-samples 200 --max-steps 60"
    args += " --batch-size 16 --learning-rate 3e-4 --log-every 1 --threads 2 --no-progress --overwrite"
    paths = [
        "--train",
        str(SST2_TRAIN),
        "--eval",
        str(SST2_DEV),
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
    ]
    assert main([*args.split(), *paths]) == 0
    return out
