"""The findings of a hostile user's tries on the newest surfaces (prune, report, export, merge, bench), each kept
fixed: nothing lost, nothing false, every refusal one line before any work."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from bertbench.cli import main, parse
from bertbench.errors import UsageError
from bertbench.jobs.prune_importance import read_partial, write_partial
from bertbench.pruning.importance import Importance
from bertbench.results.record import RunRecord
from bertbench.results.store import MIGRATIONS, ResultsStore

from .conftest import DATA, SQUAD_DEV, SQUAD_TRAIN

SST2_TRAIN, SST2_DEV = DATA / "sst2" / "train.tsv", DATA / "sst2" / "dev.tsv"


def errors(capsys: pytest.CaptureFixture) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]


# ---- data lost or inputs changed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ["--system", "../../../../../victim"],
        ["--submitter", "../../x"],
        ["--submitter", "/abs/path"],
        ["--system", "a/b"],
    ],
)
def test_export_names_are_identifiers_never_paths(tmp_path: Path, capsys, names: list[str]) -> None:
    victim = tmp_path / "victim.json"
    victim.write_text("mine")
    out = tmp_path / "deep" / "er" / "out"
    assert main(["export", "mlperf", "--output", str(out), "--store", str(tmp_path / "s.sqlite"), *names]) == 2
    lines = errors(capsys)
    assert len(lines) == 1 and names[0] in lines[0] and "not an identifier" in lines[0]
    assert victim.read_text() == "mine" and not (tmp_path / "deep").exists()


def test_a_batch_size_twice_is_refused_before_its_logs_could_overwrite_each_other() -> None:
    with pytest.raises(UsageError, match="a batch size is given twice"):
        parse(["bench", "sst2", "--model", "m", "--data", "d", "--output-dir", "o", "--batch-size", "8,8"])


def _old_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs (uid, command, status, started_at, config, metrics, environment) VALUES "
        "('old1', 'eval', 'finished', '2026-01-01T00:00:00+00:00', '{\"task\": \"sst2\"}', '{\"accuracy\": 0.9}', "
        '\'{"hostname": "otherbox"}\')'
    )
    db.commit()
    db.close()


def test_a_merge_source_is_read_only(tmp_path: Path, capsys) -> None:
    old, destination = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    _old_store(old)
    before = old.read_bytes()
    assert main(["results", "merge", str(old), "--store", str(destination)]) == 0
    assert old.read_bytes() == before  # not migrated, not switched to WAL: an older bertbench still reads it
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 1
    assert [run.uid for run in ResultsStore(destination).runs()] == ["old1"]
    # a report reads it as it is too
    assert main(["report", "--store", str(old), "--format", "json"]) == 0
    assert old.read_bytes() == before
    # an empty file is no store: refused, and left empty
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    capsys.readouterr()
    assert main(["results", "merge", str(empty), "--store", str(destination)]) == 1
    lines = errors(capsys)
    assert len(lines) == 1 and "empty, not a bertbench results store" in lines[0]
    assert empty.stat().st_size == 0


def test_options_in_any_order(tmp_path: Path, capsys) -> None:
    source, destination = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    ResultsStore(source).add(RunRecord("eval", {"task": "sst2"}, {"accuracy": 0.5}, environment={}))
    assert main(["results", "merge", "--store", str(destination), str(source)]) == 0
    assert len(ResultsStore(destination).runs()) == 1


# ---- reported success that was not --------------------------------------------------------------------------------


def test_a_partial_importance_file_is_trusted_only_when_it_fits(tmp_path: Path, capsys) -> None:
    path = tmp_path / "partial.safetensors"
    good = Importance(torch.ones(2, 4, dtype=torch.float64), torch.ones(2, 8, dtype=torch.float64), 96)
    good.add_batch(torch.ones(2, 4), torch.ones(2, 8))
    shape = ((2, 4), (2, 8))
    write_partial(path, good, "key")
    assert read_partial(path, "key", shape, 600).samples == 96
    without_batches = Importance(good.heads, good.neurons, 96)  # written before batch gradients were kept
    write_partial(path, without_batches, "key")
    assert read_partial(path, "key", shape, 600) is None
    write_partial(path, good, "key")
    for samples, reason in ((99_999_999, "not between 0 and 600"), ("abc", "'abc'"), (-3, "'-3'")):
        bad = Importance(good.heads, good.neurons, samples, good.head_batches, good.neuron_batches)  # type: ignore[arg-type]
        write_partial(path, bad, "key")
        capsys.readouterr()
        assert read_partial(path, "key", shape, 600) is None
        said = capsys.readouterr().err
        assert reason in said and "starting the importance pass over" in said
    write_partial(path, Importance(torch.ones(3, 4), torch.ones(2, 8), 5), "key")
    assert read_partial(path, "key", shape, 600) is None  # another model's shape


def test_training_on_the_evaluated_file_is_refused(tmp_path: Path, capsys) -> None:
    finetune = ["finetune", "sst2", "--model", "bert-tiny", "--train", str(SST2_DEV), "--eval", str(SST2_DEV)]
    assert main([*finetune, "--output-dir", str(tmp_path / "f"), "--no-progress"]) == 1
    lines = errors(capsys)
    assert len(lines) == 1 and "--eval is the --train file" in lines[0]
    copy = tmp_path / "copy.tsv"  # the same content under another name is the same data
    copy.write_bytes(SST2_DEV.read_bytes())
    pretrain = ["pretrain", "--model", "bert-tiny", "--corpus", str(SST2_DEV), "--eval-corpus", str(copy)]
    assert main([*pretrain, "--output-dir", str(tmp_path / "p"), "--no-progress"]) == 1
    lines = errors(capsys)
    assert len(lines) == 1 and "--eval-corpus is the --corpus file" in lines[0]
    assert not (tmp_path / "f").exists() and not (tmp_path / "p").exists()


@pytest.mark.e2e
def test_prune_reads_and_checks_its_files_before_any_pass(tmp_path: Path, capsys) -> None:
    wrong = tmp_path / "wrong.json"  # an SST-2 file where a SQuAD one belongs
    wrong.write_bytes(SST2_DEV.read_bytes())
    out, cache = tmp_path / "pruned", tmp_path / "cache"
    argv = ["prune", "squad", "--model", "bert-tiny", "--train", str(SQUAD_TRAIN), "--eval", str(wrong)]
    argv += ["--flops", "0.6", "--output-dir", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main([*argv, "--importance-samples", "16", "--max-seq-length", "128", "--doc-stride", "64"]) == 1
    err = capsys.readouterr().err
    assert "random weights" in err  # a preset said so, as every command that loads one says
    assert len([line for line in err.splitlines() if line.startswith("bertbench: error")]) == 1
    assert str(wrong) in err
    assert not (out / "model.safetensors").exists() and not list(cache.glob("prune-importance*"))


@pytest.mark.e2e
def test_output_folders_are_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.sqlite"
    argv = ["eval", "sst2", "--model", "bert-tiny", "--data", str(SST2_DEV), "--max-samples", "8"]
    assert main([*argv, "--output-dir", "relative/out", "--store", str(store), "--no-progress"]) == 0
    (run,) = ResultsStore(store).runs()
    assert run.output_dir == str(tmp_path / "relative" / "out")
    assert json.loads((tmp_path / "relative" / "out" / "metrics.json").read_text())["run_uid"] == run.uid


def test_a_loopback_rendezvous_is_refused_when_another_node_is_remote(tmp_path: Path, capsys) -> None:
    workload = tmp_path / "w.yaml"
    options = {"model": "bert-tiny", "train": str(SQUAD_DEV), "max_steps": 1}
    case = {"name": "t", "job": "finetune", "task": "squad", "nodes": ["127.0.0.1", "otherbox"], "options": options}
    workload.write_text(json.dumps({"name": "w", "description": "d", "cases": [case]}))
    assert main(["run", str(workload), "--dry-run", "--store", str(tmp_path / "s.sqlite")]) == 2
    lines = errors(capsys)
    assert len(lines) == 1 and "127.0.0.1 is loopback, which otherbox cannot reach" in lines[0]


# ---- messages and limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "squad", "--max-seq-length", "9999"], "exceeds BERT's 512 position embeddings"),
        (["prune", "squad", "--train", "t", "--flops", "abc"], "--flops: 'abc' is not a number"),
        (["eval", "squad", "--batch-size", "x"], "--batch-size: 'x' is not an integer"),
    ],
)
def test_values_out_of_range_exit_2_naming_the_option(argv: list[str], message: str, capsys) -> None:
    base = ["--model", "m", "--output-dir", "o"] + ([] if argv[0] == "prune" else ["--data", "d"])
    assert main([*argv, *base]) == 2
    lines = errors(capsys)
    assert len(lines) == 1 and message in lines[0] and "budget_value" not in lines[0]


@pytest.mark.e2e
def test_a_tracking_uri_that_cannot_work_costs_one_line_not_minutes_of_retries(tmp_path: Path, capsys) -> None:
    argv = ["eval", "sst2", "--model", "bert-tiny", "--data", str(SST2_DEV), "--max-samples", "8", "--no-progress"]
    argv += ["--output-dir", str(tmp_path / "e"), "--store", str(tmp_path / "s.sqlite")]
    assert main([*argv, "--mlflow-uri", "sqlite:////proc/mlflow.db"]) == 0  # the run itself succeeds
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "MLflow" in line or "mlflow" in line] == [
        next(line for line in err.splitlines() if "not logged to MLflow" in line)
    ]
    assert "retried" not in err and "/proc/mlflow.db" in err
    assert os.environ.get("MLFLOW_TRACKING_URI") is None
