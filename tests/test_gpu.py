"""CUDA paths (FP16/BF16 torch, ORT CUDA provider, AMP training). Hardware-gated: run with `pytest -m gpu`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertbench.cli import main

from .conftest import SQUAD_DEV, SQUAD_TRAIN

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.e2e,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_half_precisions_on_cuda_are_guarded(
    precision: str, tiny_squad_model: Path, tmp_path: Path, cache_dir: Path
) -> None:
    out = tmp_path / precision
    assert (
        main(
            [
                "eval",
                "squad",
                "--model",
                str(tiny_squad_model),
                "--data",
                str(SQUAD_DEV),
                "--max-samples",
                "100",
                "--precision",
                precision,
                "--device",
                "cuda",
                "--output-dir",
                str(out),
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
                "--max-seq-length",
                "256",
            ]
        )
        == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    assert record["emulated"] is False and record["relative_accuracy"] > 0.95


def test_onnxruntime_cuda_provider(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "ort-cuda"
    assert (
        main(
            [
                "eval",
                "squad",
                "--model",
                str(tiny_squad_model),
                "--data",
                str(SQUAD_DEV),
                "--max-samples",
                "100",
                "--backend",
                "onnxruntime",
                "--precision",
                "fp16",
                "--device",
                "cuda",
                "--output-dir",
                str(out),
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
                "--max-seq-length",
                "256",
            ]
        )
        == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    assert record["providers"][0] == "CUDAExecutionProvider" and record["relative_accuracy"] > 0.95


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_amp_training_on_cuda(precision: str, small_corpora, tmp_path: Path, cache_dir: Path) -> None:
    train, held_out = small_corpora
    out = tmp_path / "pretrain"
    assert (
        main(
            [
                "pretrain",
                "--model",
                "bert-tiny",
                "--corpus",
                str(train),
                "--eval-corpus",
                str(held_out),
                "--output-dir",
                str(out),
                "--cache-dir",
                str(cache_dir),
                "--max-steps",
                "20",
                "--precision",
                precision,
                "--device",
                "cuda",
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    assert record["train_amp"] == precision and record["final_loss"] < 11.0  # ln(30522) = 10.3 at random init
    ft = tmp_path / "finetune"
    assert (
        main(
            [
                "finetune",
                "squad",
                "--model",
                "bert-tiny",
                "--train",
                str(SQUAD_TRAIN),
                "--max-train-samples",
                "64",
                "--max-steps",
                "5",
                "--precision",
                precision,
                "--device",
                "cuda",
                "--output-dir",
                str(ft),
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
            ]
        )
        == 0
    )
