"""End to end through the CLI on the real SQuAD files: fine-tune a tiny model, evaluate it, check the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import transformers

from bertbench.cli import main
from bertbench.tasks.squad.data import load_squad
from bertbench.tasks.squad.metrics import squad_v1_metrics

from .conftest import SQUAD_DEV

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them


def eval_args(model: Path, out: Path, cache_dir: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "squad",
        "--model",
        str(model),
        "--data",
        str(SQUAD_DEV),
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        "--max-samples",
        "80",
        "--threads",
        "2",
        "--no-progress",
        "--max-seq-length",
        "256",
        *extra,
    ]


def test_finetune_lowers_the_loss_and_saves_a_transformers_model(tiny_squad_model: Path) -> None:
    log = [json.loads(line) for line in (tiny_squad_model / "train_log.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < losses[0] - 0.5
    record = json.loads((tiny_squad_model / "metrics.json").read_text())
    assert record["command"] == "finetune" and record["steps"] == 40 and record["random_weights"] is True
    assert record["train_samples_per_s"] > 0
    model = transformers.BertForQuestionAnswering.from_pretrained(tiny_squad_model)
    assert model.config.num_hidden_layers == 2


def test_eval_predictions_and_metrics_agree(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "eval"
    assert main(eval_args(tiny_squad_model, out, cache_dir)) == 0
    record = json.loads((out / "metrics.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    examples = load_squad(SQUAD_DEV).examples[:80]
    assert set(predictions) == {e.qid for e in examples}
    # The metrics file must be what the official definition gives for the predictions file.
    recomputed = squad_v1_metrics(examples, predictions)
    assert record["exact_match"] == recomputed["exact_match"]
    assert record["f1"] == recomputed["f1"]
    assert record["num_examples"] == 80 and record["num_samples"] == record["num_features"] >= 80
    for key in (
        "schema_version",
        "git_sha",
        "torch_version",
        "cache_dir",
        "throughput",
        "prepare_s",
        "warmup_s",
        "padding",
        "mean_tokens",
        "threads",
        "batch_size",
        "num_samples",
    ):
        assert key in record, key
    assert record["throughput"] > 0
    assert "latency_p50_ms" not in record  # latency comes from `bench` only
    # Answers are context slices, never rebuilt from word pieces.
    contexts = {e.qid: e.context for e in examples}
    assert all(answer in contexts[qid] for qid, answer in predictions.items())


def test_padding_mode_changes_speed_never_results(tiny_squad_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    records = {}
    for padding in ("fixed", "longest", "sorted"):
        out = tmp_path / padding
        assert main(eval_args(tiny_squad_model, out, cache_dir, "--padding", padding, "--batch-size", "7")) == 0
        records[padding] = (
            json.loads((out / "predictions.json").read_text()),
            json.loads((out / "metrics.json").read_text()),
        )
    base_predictions, base = records["fixed"]
    for padding in ("longest", "sorted"):
        predictions, record = records[padding]
        assert predictions == base_predictions
        assert record["f1"] == base["f1"] and record["exact_match"] == base["exact_match"]
        assert record["mean_padded_tokens"] < base["mean_padded_tokens"]
    assert base["mean_padded_tokens"] == 256


def test_features_are_cached_and_a_corrupt_entry_is_rebuilt(tiny_squad_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "fresh-cache"
    assert main(eval_args(tiny_squad_model, tmp_path / "a", cache)) == 0
    assert main(eval_args(tiny_squad_model, tmp_path / "b", cache)) == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    second = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert first["features_cache_hit"] is False and second["features_cache_hit"] is True
    (entry,) = list((cache / "squad-features").iterdir())
    with open(entry / "features.npz", "r+b") as handle:  # flip bytes in place
        handle.seek(200)
        handle.write(b"\x00garbage\x00")
    assert main(eval_args(tiny_squad_model, tmp_path / "c", cache)) == 0
    third = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert third["features_cache_hit"] is False
    assert third["f1"] == first["f1"]
