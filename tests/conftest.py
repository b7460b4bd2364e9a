"""Shared fixtures: real data paths, the MiniLM tokenizer, a per-session cache, a tiny fine-tuned model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bertbench.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BERTBENCH_DATA_DIR", REPO.parent / "shared" / "data"))
SQUAD_TRAIN = DATA / "squad" / "train.json"
SQUAD_DEV = DATA / "squad" / "dev.json"


@pytest.fixture(scope="session", autouse=True)
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every command records into a results store of this session, never the user's."""
    data_home = tmp_path_factory.mktemp("xdg-data")
    os.environ["XDG_DATA_HOME"] = str(data_home)
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
