"""Hostile input and broken surroundings: one line and the right exit code, no silent drops, nothing lost or
half-written, no diverged model saved as a success, and a corrupt checkpoint falls back to the one before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bertbench import cli
from bertbench.cli import main

from .conftest import DATA, SQUAD_DEV

SST2_TRAIN = DATA / "sst2" / "train.tsv"


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def eval_sst2(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    where = ["--data", str(data), "--output-dir", str(out), "--cache-dir", str(cache)]
    return ["eval", "sst2", "--model", "bert-tiny", *where, "--no-progress", *extra]


def finetune_sst2(train: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    where = ["--train", str(train), "--output-dir", str(out), "--cache-dir", str(cache)]
    return [
        "finetune",
        "sst2",
        "--model",
        "bert-tiny",
        *where,
        "--no-progress",
        "--batch-size",
        "8",
        "--threads",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def small_sst2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 160 rows of the real SST-2 training file."""
    path = tmp_path_factory.mktemp("sst2") / "small.tsv"
    path.write_text("".join(SST2_TRAIN.read_text(encoding="utf-8").splitlines(keepends=True)[:161]))
    return path


# ---- one line, never a traceback --------------------------------------------------------------------------


def test_deeply_nested_json_is_one_line_and_leaves_no_directory(capsys, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"data": ' + "[" * 200_000 + "]" * 200_000 + "}")
    out = tmp_path / "out"
    code = main(["eval", "squad", "--model", "bert-tiny", "--data", str(deep), "--output-dir", str(out)])
    lines = error_lines(capsys)
    assert code == 1 and len(lines) == 1 and str(deep) in lines[0] and "nested too deeply" in lines[0]
    assert not out.exists(), "a failed run leaves no empty output directory"


def test_output_and_cache_paths_that_are_files(capsys, tmp_path: Path, small_sst2: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(eval_sst2(small_sst2, blocker / "out", tmp_path / "cache")) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and f"{blocker}/out" in lines[0] and "not a directory" in lines[0]
    assert main(eval_sst2(small_sst2, tmp_path / "out", blocker)) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and str(blocker) in lines[0] and "cache directory is a file" in lines[0]
    assert not (tmp_path / "out").exists()


def test_unwritable_output_directory_fails_before_any_work(capsys, tmp_path: Path, small_sst2: Path) -> None:
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new entries even to root
        target = Path("/sys/kernel/bertbench-test-output")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    assert main(eval_sst2(small_sst2, target, tmp_path / "cache")) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and str(target) in lines[0] and "cannot write" in lines[0]
    assert not (tmp_path / "cache").exists(), "nothing was loaded or built before the check"


def test_an_unexpected_exception_is_one_line_with_exit_70(capsys, tmp_path: Path, monkeypatch) -> None:
    def broken(config: object) -> None:
        raise TypeError("an internal bug")

    import bertbench.jobs.report as report

    monkeypatch.setattr(report, "run_report", broken)
    assert main(["report", "--store", str(tmp_path / "s.sqlite")]) == cli.INTERNAL_ERROR
    lines = error_lines(capsys)
    assert len(lines) == 1 and "internal error: TypeError: an internal bug" in lines[0]


@pytest.mark.parametrize(
    "option", [["--batch-size", "100000000"], ["--warmup-ratio", "2"], ["--learning-rate", "nan"], ["--dropout", "2"]]
)
def test_absurd_option_values_exit_2(capsys, tmp_path: Path, small_sst2: Path, option: list[str]) -> None:
    out = tmp_path / "out"
    assert main(finetune_sst2(small_sst2, out, tmp_path / "cache", *option)) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and option[0] in lines[0]
    assert not out.exists()


# ---- data problems are said, counted, and can be made fatal ------------------------------------------------


def squad_with_problems(path: Path) -> Path:
    context = "The Eiffel Tower is in Paris, the capital of France."
    good = {"id": "ok", "question": "Where is the tower?", "answers": [{"text": "Paris", "answer_start": 23}]}
    qas = [
        good,
        {"id": "s1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": "x"}]},
        {"id": "s2", "question": "Where?", "answers": [{"text": "Paris", "answer_start": -4}]},
        {"id": "s3", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 900}]},
        {"id": "s4", "question": "Where?", "answers": [{"text": "London", "answer_start": 0}]},
        {"id": "s5", "answers": [{"text": "Paris", "answer_start": 23}]},
        {"question": "Which city?", "answers": [{"text": "Paris", "answer_start": 23}]},
        dict(good),
    ]
    paragraphs = [{"context": context, "qas": qas}, {"context": 7, "qas": [dict(good, id="n")]}]
    paragraphs.append({"context": "", "qas": [dict(good, id="e")]})
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


@pytest.mark.e2e
def test_squad_problems_are_one_terminal_line_and_strict_data_exits_2(capsys, tmp_path: Path) -> None:
    data = squad_with_problems(tmp_path / "problems.json")
    out = tmp_path / "out"
    args = ["eval", "squad", "--model", "bert-tiny", "--data", str(data), "--output-dir", str(out), "--no-progress"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache")]) == 0
    warnings = [line for line in error_lines(capsys) if str(data) in line]
    assert len(warnings) == 1
    # 4 answer_start problems, 2 missing fields, 1 duplicate id, 2 empty or non-string contexts
    for piece in ("9 problem rows", "4 answer_start_mismatch", "2 missing_field", "1 duplicate_id", "2 empty_context"):
        assert piece in warnings[0]
    assert "data[0].paragraphs[0].qas[1]" in warnings[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_problems"] == {
        "answer_start_mismatch": 4,
        "missing_field": 2,
        "duplicate_id": 1,
        "empty_context": 2,
    }
    strict = tmp_path / "strict"
    code = main([*args[:-3], "--output-dir", str(strict), "--strict-data", "--cache-dir", str(tmp_path / "cache")])
    lines = error_lines(capsys)
    assert code == 2 and len(lines) == 1 and "--strict-data" in lines[0] and str(data) in lines[0]
    assert not strict.exists()


@pytest.mark.e2e
def test_sst2_predictions_keep_the_input_row_numbers(capsys, tmp_path: Path, small_sst2: Path) -> None:
    rows = small_sst2.read_text(encoding="utf-8").splitlines()[1:7]
    bad = ["a sentence\t7", "another one\tpos", "three\tcolumns\there", "one column only"]
    # rows 0-1 good, 2-5 bad, 6-9 good: the predictions must say 0, 1, 6, 7, 8, 9
    lines = ["sentence\tlabel", *rows[:2], *bad, *rows[2:6]]
    data = tmp_path / "mixed.tsv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(eval_sst2(data, out, tmp_path / "cache")) == 0
    warning = [line for line in error_lines(capsys) if str(data) in line]
    assert len(warning) == 1 and "2 bad_label" in warning[0] and "2 wrong_field_count" in warning[0]
    predicted = (out / "predictions.tsv").read_text().splitlines()
    assert predicted[0] == "index\tprediction"
    assert [int(line.split("\t")[0]) for line in predicted[1:]] == [0, 1, 6, 7, 8, 9]


@pytest.mark.e2e
def test_finetune_records_and_reports_training_data_problems(capsys, tmp_path: Path, small_sst2: Path) -> None:
    data = tmp_path / "train.tsv"
    data.write_text(small_sst2.read_text(encoding="utf-8") + "broken row\t9\n")
    out = tmp_path / "out"
    assert main(finetune_sst2(data, out, tmp_path / "cache", "--max-steps", "2")) == 0
    assert any(str(data) in line and "1 bad_label" in line for line in error_lines(capsys))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_data_problems"] == {"bad_label": 1}
    assert metrics["train_data_problem_locations"] == ["line 162: bad_label"]


# ---- the overwrite and resume policy ----------------------------------------------------------------------


@pytest.mark.e2e
def test_overwrite_never_deletes_another_commands_checkpoints(capsys, tmp_path: Path, small_sst2: Path) -> None:
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(finetune_sst2(small_sst2, run, cache, "--max-steps", "2", "--save-steps", "1")) == 0
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert checkpoints
    capsys.readouterr()
    assert main(eval_sst2(small_sst2, run, cache, "--overwrite")) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "finetune sst2" in lines[0] and "will not overwrite" in lines[0]
    assert main(["pretrain", "--model", "bert-tiny", "--corpus", str(small_sst2), "--output-dir", str(run)]) == 1
    error_lines(capsys)
    assert (
        main(["pretrain", "--model", "bert-tiny", "--corpus", str(small_sst2), "--output-dir", str(run), "--overwrite"])
        == 1
    )
    assert "will not overwrite" in error_lines(capsys)[0]
    assert sorted((run / "checkpoints").glob("step-*")) == checkpoints
    # The same training may start over: its stale outputs go, so nothing of the old run is left beside the new.
    (run / "eval").mkdir()
    (run / "eval" / "stale.txt").write_text("old")
    assert main(finetune_sst2(small_sst2, run, cache, "--max-steps", "1", "--overwrite")) == 0
    assert not (run / "eval").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000001"]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 1


@pytest.mark.e2e
def test_resume_into_a_directory_without_checkpoints_is_refused(capsys, tmp_path: Path, small_sst2: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text("{}")
    assert main(finetune_sst2(small_sst2, out, tmp_path / "cache", "--max-steps", "1", "--resume")) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "no checkpoint to resume from" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json"]


# ---- divergence ---------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_diverging_run_stops_keeps_its_checkpoints_and_saves_no_model(
    capsys, tmp_path: Path, small_sst2: Path
) -> None:
    out = tmp_path / "out"
    args = ["--learning-rate", "1e6", "--optimizer", "adamw", "--max-steps", "12", "--save-steps", "1"]
    assert main(finetune_sst2(small_sst2, out, tmp_path / "cache", *args)) == 1
    lines = [line for line in error_lines(capsys) if line.startswith("bertbench: error")]
    assert len(lines) == 1 and "diverged at step" in lines[0] and "no final model saved" in lines[0]
    step = int(lines[0].split("diverged at step ")[1].split(":")[0])
    assert 1 <= step <= 12
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    kept = sorted((out / "checkpoints").glob("step-*"))
    assert kept and int(kept[-1].name.split("-")[1]) == step - 1, "the checkpoint before the bad step is kept"
    for tensor in load_file(str(kept[-1] / "model.safetensors")).values():
        assert tensor.isfinite().all()


# ---- corrupt checkpoints --------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("damage", ["truncated-weights", "random-state"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    capsys, tmp_path: Path, small_sst2: Path, damage: str
) -> None:
    cache = tmp_path / "cache"
    common = ("--max-steps", "4", "--save-steps", "2", "--keep-checkpoints", "3", "--dropout", "0.1")
    reference, damaged = tmp_path / "reference", tmp_path / "damaged"
    assert main(finetune_sst2(small_sst2, reference, cache, *common)) == 0
    assert main(finetune_sst2(small_sst2, damaged, cache, *common)) == 0
    newest = damaged / "checkpoints" / "step-00000004"
    if damage == "truncated-weights":
        weights = newest / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    else:
        (newest / "trainer_state.pt").write_bytes(os.urandom(4096))
    capsys.readouterr()
    assert main(finetune_sst2(small_sst2, damaged, cache, *common, "--resume")) == 0
    err = capsys.readouterr().err
    assert f"{newest}: checkpoint is corrupt" in err and "step-00000002" in err
    assert json.loads((damaged / "metrics.json").read_text())["resumed_from_step"] == 2
    expected = load_file(str(reference / "model.safetensors"))
    resumed = load_file(str(damaged / "model.safetensors"))
    assert max(float((expected[k] - resumed[k]).abs().max()) for k in expected) <= 1e-6


@pytest.mark.e2e
def test_no_readable_checkpoint_is_one_line(capsys, tmp_path: Path, small_sst2: Path) -> None:
    out = tmp_path / "out"
    common = ("--max-steps", "2", "--save-steps", "1", "--keep-checkpoints", "2")
    assert main(finetune_sst2(small_sst2, out, tmp_path / "cache", *common)) == 0
    for checkpoint in (out / "checkpoints").glob("step-*"):
        (checkpoint / "model.safetensors").write_bytes(b"\x00" * 16)
    capsys.readouterr()
    assert main(finetune_sst2(small_sst2, out, tmp_path / "cache", *common, "--resume")) == 1
    errors = [line for line in error_lines(capsys) if line.startswith("bertbench: error")]
    assert len(errors) == 1 and "no readable checkpoint" in errors[0]


# ---- progress without a terminal -------------------------------------------------------------------------------


@pytest.mark.e2e
def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bertbench", "eval", "squad", "--model", "bert-tiny", "--data", str(SQUAD_DEV)),
            *("--output-dir", str(tmp_path / "out"), "--max-samples", "40", "--batch-size", "4"),
            *("--cache-dir", str(tmp_path / "cache")),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BERTBENCH_PROGRESS_EVERY": "0"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("eval squad ")]
    assert len(progress) >= 3 and "eta" in progress[0] and "\x1b" not in proc.stderr
    done = [int(line.split()[2].split("/")[0]) for line in progress]
    assert done == sorted(done) and progress[-1].split()[2].split("/")[0] == progress[-1].split()[2].split("/")[1]


@pytest.mark.e2e
def test_finetune_overwrite_refuses_its_own_model_directory(capsys, tmp_path: Path, small_sst2: Path) -> None:
    model = tmp_path / "model"
    assert main(finetune_sst2(small_sst2, model, tmp_path / "cache", "--max-steps", "1")) == 0
    before = (model / "model.safetensors").read_bytes()
    capsys.readouterr()
    args = finetune_sst2(small_sst2, model, tmp_path / "cache", "--max-steps", "1", "--overwrite")
    args[args.index("bert-tiny")] = str(model)
    assert main(args) == 2  # refused when parsed: the output is an input
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--output-dir is an input (--model" in lines[0]
    assert (model / "model.safetensors").read_bytes() == before


@pytest.mark.e2e
def test_a_config_with_fewer_layers_than_its_weights_is_refused(capsys, tmp_path: Path, small_sst2: Path) -> None:
    model = tmp_path / "model"
    assert main(finetune_sst2(small_sst2, model, tmp_path / "cache", "--max-steps", "1")) == 0
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] = 1  # the weights hold 2 layers
    (model / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(eval_sst2(small_sst2, tmp_path / "out", tmp_path / "cache", "--model", str(model))) == 1
    lines = error_lines(capsys)
    assert len(lines) == 1 and "encoder weights that" in lines[0] and "num_hidden_layers 1" in lines[0]
