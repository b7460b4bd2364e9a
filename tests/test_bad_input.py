"""Bad input ends with one clear line naming the file and the problem, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertbench.cli import main

from .conftest import SQUAD_DEV, SQUAD_TRAIN


def run_eval(capsys, tmp_path: Path, data: Path, model: str = "bert-tiny", *extra: str) -> tuple[int, str]:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "squad",
            "--model",
            model,
            "--data",
            str(data),
            "--output-dir",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-progress",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert not (out / "metrics.json").exists() or code == 0
    return code, "\n".join(lines)


def test_malformed_json_names_file_and_position(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"data": [ {"paragraphs": [ }')
    code, err = run_eval(capsys, tmp_path, bad)
    assert code == 1
    assert err.count("\n") == 0 and str(bad) in err and "malformed JSON at line 1 column" in err


def test_structure_error_names_the_position(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "nodata.json"
    bad.write_text(json.dumps({"data": [{"title": "x", "paragraphs": [{"context": "c", "qas": 3}]}]}))
    code, err = run_eval(capsys, tmp_path, bad)
    assert code == 1 and err.count("\n") == 0
    assert str(bad) in err and "data[0].paragraphs[0]" in err and "'qas' list" in err


def test_missing_fields_are_counted_and_a_file_without_valid_questions_is_an_error(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "fields.json"
    qas = [{"question": "no id?", "answers": [{"text": "c", "answer_start": 0}]}, {"id": "x", "answers": []}]
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": qas}]}]}))
    code, err = run_eval(capsys, tmp_path, bad)
    assert code == 1 and err.count("\n") == 0
    assert "no valid questions" in err and "2 missing_field" in err


def test_missing_data_file(capsys, tmp_path: Path) -> None:
    code, err = run_eval(capsys, tmp_path, tmp_path / "nope.json")
    assert code == 1 and err.endswith("nope.json: file not found")


def test_missing_model_directory(capsys, tmp_path: Path) -> None:
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV, "/no/such/model/dir")
    assert code == 1 and err.count("\n") == 0 and "/no/such/model/dir" in err


def test_model_directory_without_config(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV, str(empty))
    assert code == 1 and f"{empty}/config.json: missing" in err


def test_hub_id_offline(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV, "google-bert/bert-base-uncased")
    assert code == 1 and err.count("\n") == 0
    assert "google-bert/bert-base-uncased" in err and "HF_HUB_OFFLINE" in err


def test_unknown_option_and_bad_value(capsys, tmp_path: Path) -> None:
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV, "bert-tiny", "--frobnicate")
    assert code == 2 and err.count("\n") == 0 and "--frobnicate" in err
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV, "bert-tiny", "--batch-size", "0")
    assert code == 2 and "--batch-size" in err


def test_non_empty_output_dir_is_refused(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_eval(capsys, tmp_path, SQUAD_DEV)
    assert code == 1 and "not empty" in err and "--overwrite" in err
    code = main(
        [
            "finetune",
            "squad",
            "--model",
            "bert-tiny",
            "--train",
            str(SQUAD_TRAIN),
            "--output-dir",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1 and (out / "keep.txt").read_text() == "mine"


@pytest.mark.e2e
def test_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("[1, 2")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertbench",
            "eval",
            "squad",
            "--model",
            "bert-tiny",
            "--data",
            str(bad),
            "--output-dir",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(bad) in proc.stderr
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_fp16_training_on_cpu_is_refused(capsys, tmp_path: Path) -> None:
    code = main(
        [
            "finetune",
            "squad",
            "--model",
            "bert-tiny",
            "--train",
            str(SQUAD_TRAIN),
            "--precision",
            "fp16",
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and "fp16" in err and "CUDA" in err
