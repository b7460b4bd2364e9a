"""SST-2: TSV validation, dynamic padding, and fine-tune + eval end to end through the CLI on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bertbench.cache import Cache
from bertbench.cli import main
from bertbench.errors import BertbenchError
from bertbench.tasks.sst2 import task as sst2
from bertbench.tasks.sst2.data import load_sst2
from bertbench.tasks.sst2.options import Sst2Options

from .conftest import SST2_DEV


def test_real_files_parse_cleanly() -> None:
    dev = load_sst2(SST2_DEV)
    assert len(dev.sentences) == 872 and sum(dev.labels) == 444 and not dev.problems


def test_bad_rows_are_counted_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\nbad label\t2\nno label\n\t0\nfine\t0\n")
    data = load_sst2(path)
    assert data.sentences == ["good film", "fine"] and data.labels == [1, 0]
    assert data.problems == {"bad_label": 1, "wrong_field_count": 1, "empty_sentence": 1}
    assert data.problem_lines == ["line 3: bad_label", "line 4: wrong_field_count", "line 5: empty_sentence"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text\tscore\nok\t1\n", "line 1: expected the header"),
        ("sentence\tlabel\nx\tpositive\ny\t-1\n", r"no valid rows \(2 bad_label; first: line 2"),
        ("", "empty file"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(BertbenchError, match=message):
        load_sst2(path)


def test_training_batches_are_padded_to_their_longest_sentence(tokenizer, tmp_path: Path) -> None:
    data = sst2.load_dataset(SST2_DEV, tokenizer, Sst2Options(max_seq_length=128), Cache(tmp_path))
    rows = np.array([0, 5, 9])
    batch = data.training_batch(rows)
    assert batch["input_ids"].shape == (3, int(data.lengths[rows].max()))
    assert (batch["attention_mask"].sum(axis=1) == data.lengths[rows]).all()
    assert (batch["labels"] == data.labels[rows]).all()


@pytest.mark.e2e
def test_finetune_then_eval_through_the_cli(sst2_model: Path, tmp_path: Path, cache_dir: Path) -> None:
    log = [json.loads(line) for line in (sst2_model / "train_log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    out = tmp_path / "eval"
    paths = ["--model", str(sst2_model), "--data", str(SST2_DEV), "--output-dir", str(out)]
    assert main(["eval", "sst2", *paths, "--cache-dir", str(cache_dir), "--threads", "2", "--no-progress"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    lines = (out / "predictions.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 873
    predictions = np.array([int(line.split("\t")[1]) for line in lines[1:]])
    labels = np.array(load_sst2(SST2_DEV).labels)
    assert record["accuracy"] == pytest.approx(float((predictions == labels).mean()), abs=1e-12)
    assert record["accuracy"] > 0.6 and record["num_samples"] == 872  # well above the 0.51 majority class
    assert record["padding"] == "sorted" and record["mean_tokens"] < 40  # dynamic: far below 128


@pytest.mark.e2e
def test_unlabelled_test_layout_gives_predictions_only(tmp_path: Path, cache_dir: Path) -> None:
    test_file = tmp_path / "test.tsv"
    test_file.write_text("index\tsentence\n0\ta gorgeous film\n1\ta dreadful mess\n7\tmeh\n")
    out = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "sst2",
                "--model",
                "bert-tiny",
                "--data",
                str(test_file),
                "--output-dir",
                str(out),
                "--cache-dir",
                str(cache_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((out / "metrics.json").read_text())
    assert "accuracy" not in record and record["labelled"] is False
    rows = (out / "predictions.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows] == ["index", "0", "1", "7"]
