"""Speak MLPerf: accuracy logs MLPerf's scorer reads (its decoding re-implemented in tests/mlperf_squad.py), LoadGen's
own config files, the submission layout, the compliance tests, MLPerf's absolute accuracy target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertbench.bench.codec import LogFormat, decode_sample, encode_sample
from bertbench.bench.compliance import mlperf_test05_seeds, verify_accuracy, verify_performance
from bertbench.bench.loadgen_conf import read_conf
from bertbench.cli import main
from bertbench.errors import UsageError
from bertbench.results.mlperf_layout import choose, mlperf_target

from . import mlperf_squad
from .conftest import SQUAD_DEV

NAMES, PER_TOKEN = ("start_logits", "end_logits"), ("start_logits", "end_logits")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_squad_sample_is_raw_little_endian_logits_as_mlperf_reads_them(dtype: str, transposed: bool) -> None:
    rng = np.random.default_rng(0)
    sample = {"start_logits": rng.normal(size=37).astype(np.float32), "end_logits": rng.normal(size=37)}
    data = encode_sample(sample, NAMES, PER_TOKEN, LogFormat(dtype, transposed))
    assert len(data) == 37 * 2 * np.dtype(dtype).itemsize  # no header: just the numbers
    flat = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))  # what accuracy-squad.py does
    table = flat.reshape(2, -1).T if transposed else flat.reshape(-1, 2)
    np.testing.assert_array_equal(table[:, 0], sample["start_logits"].astype(dtype))
    np.testing.assert_array_equal(table[:, 1], sample["end_logits"].astype(dtype))
    back = decode_sample(data, NAMES, PER_TOKEN, LogFormat(dtype, transposed))
    np.testing.assert_array_equal(back["end_logits"], sample["end_logits"].astype(dtype).astype(np.float32))
    logits = {"logits": np.array([0.25, -1.5], dtype=np.float32)}  # SST-2: the two class logits
    raw = encode_sample(logits, ("logits",), (), LogFormat())
    assert np.frombuffer(raw, "<f4").tolist() == [0.25, -1.5]


def _bench(tmp_path: Path, cache_dir: Path, model: Path, name: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / name
    argv = ["bench", "squad", "--model", str(model), "--data", str(SQUAD_DEV), "--output-dir", str(out)]
    argv += ["--cache-dir", str(cache_dir), "--max-samples", "40", "--batch-size", "8", "--no-progress"]
    return main([*argv, "--min-duration", "1", *extra]), out


@pytest.mark.e2e
@pytest.mark.parametrize(("dtype", "transposed"), [("float32", False), ("float16", True)])
def test_mlperfs_scorer_reads_our_accuracy_log_and_finds_our_f1(
    tmp_path: Path, cache_dir: Path, tiny_squad_model: Path, dtype: str, transposed: bool
) -> None:
    layout = ["--output-dtype", dtype, *(["--output-transposed"] if transposed else [])]
    code, out = _bench(tmp_path, cache_dir, tiny_squad_model, "acc", "--mode", "accuracy", *layout)
    assert code == 0
    ours = json.loads((out / "metrics.json").read_text())
    assert ours["f1"] > 1  # a (lightly) trained model: answers to score
    assert ours["answer_text"] == "mlperf"  # bench scores as MLPerf does unless told otherwise
    theirs, answers = mlperf_squad.score(
        SQUAD_DEV, tiny_squad_model / "vocab.txt", out / "loadgen" / "mlperf_log_accuracy.json", dtype, transposed, 40
    )
    assert answers == json.loads((out / "predictions.json").read_text())  # every question, not only the mean
    assert abs(theirs["f1"] - ours["f1"]) <= 1e-6 and abs(theirs["exact_match"] - ours["exact_match"]) <= 1e-6


def test_config_files_are_checked_line_by_line(tmp_path: Path) -> None:
    good = tmp_path / "user.conf"
    good.write_text(
        "# comment\nbert.Offline.target_qps = 120\n*.Offline.min_duration = 2000\n*.*.min_query_count = 5  # x\n"
        "bert.Server.target_latency = 130\nresnet50.Offline.target_qps = 9\n"
    )
    assert read_conf(good, "Offline") == {"target_qps": 120.0, "min_duration": 2000.0, "min_query_count": 5.0}
    assert read_conf(good, "Server") == {"target_latency": 130.0, "min_query_count": 5.0}
    for text, message in (
        ("bert.Offline.target_qsp = 3\n", "line 1: key 'bert.Offline.target_qsp': LoadGen has no setting"),
        ("bert.Offline.target_qps 3\n", "line 1: expected 'model.scenario.key = value'"),
        ("bert.Offline.target_qps = fast\n", "value 'fast' is not a number"),
        ("\nbert.Offlin.target_qps = 3\n", "line 2: key 'bert.Offlin.target_qps': unknown scenario"),
        ("bert.target_qps = 3\n", "is not model.scenario.key"),
    ):
        bad = tmp_path / "bad.conf"
        bad.write_text(text)
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
            read_conf(bad, "Offline")
        assert str(bad) in str(refused.value)


def test_a_bad_config_file_is_one_line_before_anything_loads(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "user.conf"
    bad.write_text("bert.Offline.target_qps = 10\nbert.Offline.min_duartion = 1\n")
    argv = ["bench", "squad", "--model", "bert-tiny", "--data", str(SQUAD_DEV), "--output-dir", str(tmp_path / "o")]
    assert main([*argv, "--user-conf", str(bad)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bertbench: error")]
    assert len(lines) == 1 and str(bad) in lines[0] and "line 2" in lines[0] and "min_duartion" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_config_files_give_loadgen_its_settings_and_flags_still_win(tmp_path: Path, cache_dir: Path) -> None:
    mlperf = tmp_path / "mlperf.conf"
    mlperf.write_text("*.Offline.min_duration = 4000\n*.Offline.target_qps = 50\n*.*.max_duration = 60000\n")
    user = tmp_path / "user.conf"
    user.write_text("bert.Offline.target_qps = 2000\n")  # user.conf after mlperf.conf: it wins over it
    argv = ["bench", "squad", "--model", "bert-tiny", "--data", str(SQUAD_DEV), "--backend", "null"]
    argv += ["--cache-dir", str(cache_dir), "--max-samples", "20", "--no-progress", "--mlperf-conf", str(mlperf)]
    assert main([*argv, "--user-conf", str(user), "--output-dir", str(tmp_path / "a")]) == 0
    settings = json.loads((tmp_path / "a" / "metrics.json").read_text())["loadgen_settings"]
    assert (
        settings["min_duration_ms"] == 4000 and settings["target_qps"] == 2000 and settings["max_duration_ms"] == 60000
    )
    assert main([*argv, "--user-conf", str(user), "--min-duration", "1", "--output-dir", str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert record["loadgen_settings"]["min_duration_ms"] == 1000  # the flag wins
    assert record["loadgen_settings"]["target_qps"] == 2000 and record["user_conf_sha256"]


@pytest.mark.e2e
def test_test01_passes_on_a_deterministic_path_and_fails_on_corrupted_outputs(
    tmp_path: Path, cache_dir: Path, tiny_squad_model: Path
) -> None:
    # batch 1, fixed padding: every sample computed alone at one shape, so its logits are the same bytes every time
    code, out = _bench(
        tmp_path,
        cache_dir,
        tiny_squad_model,
        "t01",
        "--batch-size",
        "1",
        "--padding",
        "fixed",
        "--compliance",
        "TEST01",
    )
    assert code == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["compliance_test"] == "TEST01"
    assert record["compliance_logged_samples"] > 0
    assert record["compliance_identical_samples"] == record["compliance_logged_samples"]
    folder = out / "compliance" / "TEST01"
    assert "Accuracy check pass: True" in (folder / "verify_accuracy.txt").read_text()
    # the performance half compares two timed runs (within 10 %): its verdict must follow from their figures, but a
    # shared machine may fail it, so the test checks the arithmetic rather than the machine
    ratio = record["compliance_performance_ratio"]  # None when the audited run itself was INVALID (too short)
    passed = ratio is not None and ratio > 0.9
    assert record["compliance_passed"] is passed
    verdict = (folder / "verify_performance.txt").read_text()
    said = "INVALID" if ratio is None else f"{ratio:.3f} of the reference"
    assert ("TEST PASS" in verdict) is passed and (passed or said in verdict)
    assert "*.*.accuracy_log_sampling_target" in (folder / "audit.config").read_text()
    # the same check on a log whose answers were changed: it must fail
    corrupted = tmp_path / "corrupted.json"
    entries = json.loads((folder / "performance" / "mlperf_log_accuracy.json").read_text())
    logits = np.frombuffer(bytes.fromhex(entries[0]["data"]), "<f4").copy()
    logits[::2] = logits[::2][::-1]  # start logits reversed: another answer
    entries[0]["data"] = logits.tobytes().hex()
    corrupted.write_text(json.dumps(entries))

    def decode(data: bytes) -> dict:
        return decode_sample(data, NAMES, PER_TOKEN, LogFormat())

    verdict = verify_accuracy(folder / "accuracy" / "mlperf_log_accuracy.json", corrupted, decode)
    assert verdict.passed is False and verdict.facts["compliance_different_samples"] == 1


@pytest.mark.parametrize(
    ("scenario", "which", "reference", "test", "passed"),
    [
        ("offline", "TEST01", 100.0, 91.0, True),
        ("offline", "TEST01", 100.0, 89.0, False),  # more than 10 % slower
        ("offline", "TEST05", 100.0, 94.0, False),  # TEST05 allows 5 %
        ("singlestream", "TEST05", 150_000.0, 175_000.0, True),  # a short latency: 20 %
        ("singlestream", "TEST05", 900_000.0, 990_000.0, False),  # a longer one: 5 %
    ],
)
def test_performance_verdicts_follow_mlperfs_thresholds(
    scenario: str, which: str, reference: float, test: float, passed: bool
) -> None:
    def summary(score: float) -> dict:
        if scenario == "offline":
            return {"loadgen_result": "VALID", "loadgen_samples_per_second": score}
        return {"loadgen_result": "VALID", "loadgen_90.00_percentile_latency_ns": score}

    verdict = verify_performance(summary(reference), summary(test), scenario, which)
    assert verdict.passed is passed and verdict.facts["compliance_performance_ratio"] == pytest.approx(test / reference)
    assert verdict.lines[-1].startswith("TEST PASS" if passed else "TEST FAIL: Test score invalid")
    if not passed:
        assert f"{test / reference:.3f} of the reference" in verdict.lines[-1]
    invalid = verify_performance(summary(reference), {**summary(test), "loadgen_result": "INVALID"}, scenario, which)
    assert invalid.passed is False and "INVALID" in invalid.lines[-1]


@pytest.mark.e2e
def test_test05_runs_other_seeds_and_says_its_verdict(tmp_path: Path, cache_dir: Path) -> None:
    argv = ["bench", "sst2", "--model", "bert-tiny", "--data", str(SQUAD_DEV.parent.parent / "sst2" / "dev.tsv")]
    argv += ["--cache-dir", str(cache_dir), "--max-samples", "60", "--no-progress", "--min-duration", "1"]
    assert main([*argv, "--compliance", "TEST05", "--output-dir", str(tmp_path / "t05")]) == 0
    record = json.loads((tmp_path / "t05" / "metrics.json").read_text())
    folder = tmp_path / "t05" / "compliance" / "TEST05"
    assert record["compliance_test"] == "TEST05" and isinstance(record["compliance_passed"], bool)
    assert record["compliance_performance_ratio"] > 0
    seed = mlperf_test05_seeds("Offline")["qsl_rng_seed"]
    assert seed != 0 and f"*.*.test05_qsl_rng_seed = {seed}" in (folder / "audit.config").read_text()
    detail = (folder / "performance" / "mlperf_log_detail.txt").read_text()
    assert f'"effective_qsl_rng_seed", "value": {seed}' in detail  # LoadGen ran with MLPerf's TEST05 seeds
    verdict = (folder / "verify_performance.txt").read_text()
    assert ("TEST PASS" in verdict) == record["compliance_passed"]


@pytest.mark.e2e
def test_export_writes_mlperfs_layout_from_valid_quiet_runs(
    tmp_path: Path, cache_dir: Path, tiny_squad_model: Path, capsys
) -> None:
    store = tmp_path / "s.sqlite"
    common = ["--store", str(store)]
    code, perf = _bench(tmp_path, cache_dir, tiny_squad_model, "perf", *common)
    assert code == 0
    code, acc = _bench(tmp_path, cache_dir, tiny_squad_model, "acc", "--mode", "accuracy", *common)
    assert code == 0
    code, _ = _bench(tmp_path, cache_dir, tiny_squad_model, "other", "--padding", "longest", *common)  # no pair
    out = tmp_path / "submission"
    capsys.readouterr()
    code = main(["export", "mlperf", "--output", str(out), "--system", "box", "--store", str(store)])
    err = capsys.readouterr().err
    assert "left out:" in err
    performance = json.loads((perf / "metrics.json").read_text())
    if performance["result_valid"] is not True or performance["contended"] is not False:
        # a busy machine (or a run LoadGen judged INVALID): never exported, said why, nothing written
        assert code == 1 and ("contended machine" in err or "INVALID" in err)
        assert not (out / "open").exists()
        return
    assert code == 0 and "no accuracy-mode run" in err and "could not fill" in err
    root = out / "open" / "bertbench"
    results = root / "results" / "box" / "bert-99" / "Offline"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        assert (results / "performance" / "run_1" / name).read_bytes() == (perf / "loadgen" / name).read_bytes()
    accuracy = results / "accuracy"
    assert (accuracy / "mlperf_log_accuracy.json").read_bytes() == (
        acc / "loadgen" / "mlperf_log_accuracy.json"
    ).read_bytes()
    scores = json.loads((accuracy / "accuracy.txt").read_text())
    assert scores == {
        "exact_match": json.loads((acc / "metrics.json").read_text())["exact_match"],
        "f1": json.loads((acc / "metrics.json").read_text())["f1"],
    }
    measurements = root / "measurements" / "box" / "bert-99" / "Offline"
    assert "bert.Offline.target_qps = " in (measurements / "user.conf").read_text()
    assert json.loads((measurements / "box_bertbench_Offline.json").read_text())["retraining"] == "no"
    system = json.loads((root / "systems" / "box.json").read_text())
    assert system["system_name"] == "box" and system["division"] == "open" and system["host_processor_model_name"]
    assert system["host_processor_frequency"] == ""  # what we cannot know stays empty
    # a second export into the same folder is refused; --overwrite replaces our own export
    assert main(["export", "mlperf", "--output", str(out), "--store", str(store)]) == 1
    assert main(["export", "mlperf", "--output", str(out), "--store", str(store), "--overwrite"]) == 0
    shutil.rmtree(out)


def test_mlperfs_absolute_target_is_said_for_a_bert_large_checkpoint_only() -> None:
    large = {"task": "squad", "f1": 90.1, "num_layers": 24, "hidden_size": 1024, "num_heads": 16}
    assert mlperf_target(large) == "MLPerf bert-99 yes, bert-99.9 no"  # 90.1 >= 89.965, < 90.783
    assert mlperf_target({**large, "f1": 89.0}) == "MLPerf bert-99 no, bert-99.9 no"
    assert mlperf_target({**large, "num_layers": 6, "hidden_size": 384, "num_heads": 12}) == "relative to own FP32"
    assert mlperf_target({"task": "sst2", "accuracy": 0.9}) is None
    assert mlperf_target({**large, "random_weights": True}) is None


def test_only_runs_mlperf_would_accept_are_paired_for_export() -> None:
    perf = {
        "command": "bench",
        "mode": "performance",
        "task": "squad",
        "model": "m",
        "scenario": "offline",
        "batch_size": 8,
        "result_valid": True,
        "contended": False,
        "uid": "p" * 32,
    }
    acc = {**perf, "mode": "accuracy", "f1": 50.0, "answer_text": "mlperf", "uid": "a" * 32}
    entries, refused = choose([perf, acc])
    assert len(entries) == 1 and entries[0].accuracy is acc and entries[0].benchmark == "bert-99" and not refused
    cases = {
        "LoadGen judged it INVALID": [{**perf, "result_valid": False}, acc],
        "contended": [{**perf, "contended": True}, acc],
        "no accuracy-mode run": [perf, {**acc, "answer_text": "characters"}],  # its F1 is not what MLPerf prints
        "is no MLPerf Inference benchmark": [{**perf, "task": "sst2"}, {**acc, "task": "sst2"}],
    }
    for reason, runs in cases.items():
        entries, refused = choose(runs)
        assert not entries and len(refused) == 1 and reason in refused[0], (reason, refused)


def test_bench_scores_squad_as_mlperf_and_the_other_commands_as_hugging_face() -> None:
    from bertbench.commands import config_from_options

    base = {"model": "bert-tiny", "data": "d.json", "output_dir": "o"}
    assert config_from_options("bench", "squad", base).task_options.answer_text == "mlperf"
    assert config_from_options("eval", "squad", base).task_options.answer_text == "characters"
    told = config_from_options("bench", "squad", {**base, "answer_text": "characters"})
    assert told.task_options.answer_text == "characters"  # a rule the user gives is kept
    train = {"model": "bert-tiny", "train": "t.json", "output_dir": "o"}
    assert config_from_options("finetune", "squad", train).task_options.answer_text == "characters"
    assert not hasattr(config_from_options("bench", "sst2", base).task_options, "answer_text")
