"""Speak MLPerf: accuracy logs MLPerf's scorer reads (its accuracy-squad.py, run unmodified by
tests/mlcommons_scorer.py), LoadGen's own config files, the submission layout, the compliance tests, MLPerf's absolute
accuracy target."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertbench.bench.codec import LogFormat, decode_sample, encode_sample
from bertbench.bench.compliance import mlperf_test05_seeds, verify_accuracy, verify_performance
from bertbench.bench.loadgen_conf import read_conf
from bertbench.cli import main
from bertbench.errors import UsageError
from bertbench.results.mlperf_layout import choose, mlperf_target

from . import mlcommons_scorer
from .conftest import MLCOMMONS, SQUAD_DEV

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
    log = out / "loadgen" / "mlperf_log_accuracy.json"
    _, answers = mlcommons_scorer.score(SQUAD_DEV, tiny_squad_model / "vocab.txt", log, tmp_path, dtype, transposed)
    predictions = json.loads((out / "predictions.json").read_text())
    # it answers the questions of the whole file ("empty" where the log has no window): ours are the first 40
    assert len(predictions) == 40 and {q: answers[q] for q in predictions} == predictions


@pytest.mark.e2e
def test_mlperf_answer_text_equals_accuracy_squad_on_every_dev_question(
    tmp_path: Path, cache_dir: Path, tiny_squad_model: Path
) -> None:
    """The whole shared development file through bench's accuracy mode: every answer and the F1 that MLPerf's
    accuracy-squad.py prints on our own accuracy log are ours."""
    out = tmp_path / "dev"
    argv = ["bench", "squad", "--model", str(tiny_squad_model), "--data", str(SQUAD_DEV), "--output-dir", str(out)]
    argv += ["--cache-dir", str(cache_dir), "--mode", "accuracy", "--batch-size", "32", "--no-progress"]
    assert main(argv) == 0
    ours = json.loads((out / "metrics.json").read_text())
    log = out / "loadgen" / "mlperf_log_accuracy.json"
    theirs, answers = mlcommons_scorer.score(SQUAD_DEV, tiny_squad_model / "vocab.txt", log, tmp_path)
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == ours["num_examples"] == len(answers) > 700
    different = {q: (predictions[q], answers[q]) for q in answers if predictions.get(q) != answers[q]}
    assert different == {}
    assert theirs is not None and theirs["f1"] == pytest.approx(ours["f1"], abs=1e-9)
    assert theirs["exact_match"] == pytest.approx(ours["exact_match"], abs=1e-9)


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


def _mlcommons_test01(tmp_path: Path, accuracy_log: Path, performance_detail: Path, audit_dir: Path) -> Path:
    """MLCommons' run_verification.py, unmodified, on our logs: a results folder (the accuracy run's accuracy log,
    the performance run's detail log) and the audited run's folder; returns the TEST01 folder it writes."""
    results, work = tmp_path / "mlcommons-results", tmp_path / "mlcommons-cwd"
    for folder in (results / "accuracy", results / "performance" / "run_1", work):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(accuracy_log, results / "accuracy" / "mlperf_log_accuracy.json")
    shutil.copy2(performance_detail, results / "performance" / "run_1" / "mlperf_log_detail.txt")
    script = MLCOMMONS / "compliance" / "TEST01" / "run_verification.py"
    argv = [sys.executable, str(script), "-r", str(results), "-c", str(audit_dir), "-o", str(tmp_path / "mlcommons")]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=120, env=env)
    assert "TEST01 verification complete" in done.stdout, done.stdout + done.stderr
    return tmp_path / "mlcommons" / "TEST01"


def _verdicts(folder: Path) -> tuple[list[str], str]:
    """The count lines and verdict of verify_accuracy.txt, and the verdict line of verify_performance.txt."""
    accuracy = [
        line.strip()
        for line in (folder / "verify_accuracy.txt").read_text().splitlines()
        if line.startswith("num_") or line.startswith("TEST ")
    ]
    performance = [line for line in (folder / "verify_performance.txt").read_text().splitlines() if "TEST " in line]
    return accuracy, performance[-1].split(" in /")[0]


@pytest.mark.e2e
def test_test01_verdicts_equal_mlcommons_run_verification_on_passing_and_failing_logs(
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
    assert record["compliance_test"] == "TEST01" and record["compliance_logged_samples"] > 0
    assert record["compliance_identical_samples"] == record["compliance_logged_samples"]
    ours = out / "compliance" / "TEST01"  # MLPerf's own TEST01 tree
    assert (ours / "accuracy" / "mlperf_log_accuracy.json").is_file()
    assert sorted(p.name for p in (ours / "performance" / "run_1").iterdir()) == [
        "mlperf_log_detail.txt",
        "mlperf_log_summary.txt",
    ]
    audit = out / "compliance" / "TEST01-audit"
    assert "*.*.accuracy_log_sampling_target = 4096" in (audit / "audit.config").read_text()
    detail = (audit / "mlperf_log_detail.txt").read_text()
    assert '"key": "effective_qsl_rng_seed", "value": 2085463073848966840' in detail  # MLPerf's seeds, never 0
    accuracy_log = Path(record["compliance_reference_dirs"]["accuracy"]) / "mlperf_log_accuracy.json"
    performance_detail = out / "loadgen" / "mlperf_log_detail.txt"
    theirs = _mlcommons_test01(tmp_path / "pass", accuracy_log, performance_detail, audit)
    assert _verdicts(theirs) == _verdicts(ours)
    # the same TEST01 tree run_verification.py writes into a submission, file for file
    assert sorted(str(p.relative_to(ours)) for p in ours.rglob("*")) == sorted(
        str(p.relative_to(theirs)) for p in theirs.rglob("*")
    )
    for name in ("accuracy/mlperf_log_accuracy.json", "performance/run_1/mlperf_log_detail.txt"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes()
    assert _verdicts(ours)[0][-1] == "TEST PASS"
    assert record["compliance_passed"] is (_verdicts(ours)[1] == "TEST PASS")

    # deliberately failing: one logged response changed at its first byte, and the audited run 2x faster
    broken = tmp_path / "broken-audit"
    shutil.copytree(audit, broken)
    entries = json.loads((broken / "mlperf_log_accuracy.json").read_text())
    data = bytearray(bytes.fromhex(entries[0]["data"]))
    data[0] ^= 0x55
    entries[0]["data"] = bytes(data).hex().upper()
    (broken / "mlperf_log_accuracy.json").write_text(json.dumps(entries))
    lines = (broken / "mlperf_log_detail.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        for key in ("result_samples_per_second", "result_validity"):
            if f'"key": "{key}"' in line:
                entry = json.loads(line[len(":::MLLOG ") :])
                entry["value"] = entry["value"] * 2 if key.endswith("second") else "VALID"
                lines[i] = ":::MLLOG " + json.dumps(entry)
    (broken / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n")
    theirs = _mlcommons_test01(tmp_path / "fail", accuracy_log, performance_detail, broken)
    decode = lambda data: decode_sample(data, NAMES, PER_TOKEN, LogFormat())  # noqa: E731
    accuracy = verify_accuracy(accuracy_log, broken / "mlperf_log_accuracy.json", decode)
    performance = verify_performance(performance_detail, broken / "mlperf_log_detail.txt", "TEST01")
    ours_lines = ([*accuracy.lines], performance.lines[-1].split(" in /")[0])
    assert ours_lines == _verdicts(theirs)
    assert accuracy.passed is False and accuracy.facts["compliance_mismatched_samples"] >= 1


def _detail_log(path: Path, scenario: str, score: float, valid: bool = True) -> Path:
    """A LoadGen detail log with the keys verify_performance.py reads."""
    key = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    entries = [
        ("effective_scenario", scenario),
        ("result_validity", "VALID" if valid else "INVALID"),
        (key, score),
    ]
    meta = {"is_error": False, "is_warning": False}
    lines = [":::MLLOG " + json.dumps({"key": k, "value": v, "metadata": meta}) for k, v in entries]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("scenario", "reference", "test", "valid"),
    [
        ("Offline", 100.0, 91.0, True),
        ("Offline", 100.0, 89.0, True),  # more than 10 % slower
        ("Offline", 100.0, 111.0, True),  # more than 10 % faster: the band is two-sided
        ("Offline", 100.0, 110.0, True),  # the band's edge is inside it
        ("SingleStream", 150_000.0, 175_000.0, True),  # a short latency: 20 %
        ("SingleStream", 900_000.0, 990_000.0, True),
        ("SingleStream", 900_000.0, 1_000_000.0, True),
        ("Offline", 100.0, 100.0, False),  # an INVALID run fails whatever its score
    ],
)
def test_performance_verdicts_equal_mlcommons_verify_performance(
    tmp_path: Path, scenario: str, reference: float, test: float, valid: bool
) -> None:
    ref = _detail_log(tmp_path / "ref.txt", scenario, reference)
    got = _detail_log(tmp_path / "test.txt", scenario, test, valid)
    script = MLCOMMONS / "compliance" / "TEST01" / "verify_performance.py"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, str(script), "-r", str(ref), "-t", str(got)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    theirs = [
        line for line in (done.stdout + done.stderr).splitlines() if line.startswith(("TEST", "Reference", "Test"))
    ]
    verdict = verify_performance(ref, got, "TEST01")
    ours = [line for line in verdict.lines if line.startswith(("TEST", "Reference", "Test"))]
    assert ours == theirs
    assert verdict.passed is (theirs[-1] == "TEST PASS")
    # TEST05 (ours, retired by MLPerf): the same rules at 5 %
    five = _detail_log(tmp_path / "ref5.txt", "Offline", 100.0)
    assert verify_performance(five, _detail_log(tmp_path / "a.txt", "Offline", 96.0), "TEST05").passed is True
    assert verify_performance(five, _detail_log(tmp_path / "b.txt", "Offline", 94.0), "TEST05").passed is False


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
    audit = tmp_path / "t05" / "compliance" / "TEST05-audit"
    assert seed != 0 and f"*.*.test05_qsl_rng_seed = {seed}" in (audit / "audit.config").read_text()
    detail = (folder / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()
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
    assert code == 0 and "no accuracy-mode run" in err and "--system-facts" in err and "cooling" in err
    root = out / "open" / "bertbench"
    assert sorted(p.name for p in out.iterdir()) == ["open"]  # nothing beside the division (MLPerf's checker)
    results = root / "results" / "box" / "bert-99" / "Offline"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        assert (results / "performance" / "run_1" / name).read_bytes() == (perf / "loadgen" / name).read_bytes()
    accuracy = results / "accuracy"
    whole = (acc / "loadgen" / "mlperf_log_accuracy.json").read_bytes()
    written = (accuracy / "mlperf_log_accuracy.json").read_bytes()
    assert written == whole if len(whole) < 4096 else written[:4096] == whole[:4096] and b"\n\n...\n\n" in written
    scores, hashed = (accuracy / "accuracy.txt").read_text().split("\nhash=")
    assert json.loads(scores) == {
        "exact_match": json.loads((acc / "metrics.json").read_text())["exact_match"],
        "f1": json.loads((acc / "metrics.json").read_text())["f1"],
    }
    assert hashed.strip() == hashlib.sha256(whole).hexdigest()  # MLPerf's truncation: the whole log's hash
    assert (results / "user.conf").read_text() == (perf / "loadgen" / "user.conf").read_text()
    assert "bert.Offline.target_qps = " in (results / "user.conf").read_text()
    assert json.loads((results / "measurements.json").read_text())["retraining"] == "no"
    assert (results / "README.md").read_text().startswith("# bert-99 Offline on box")
    system = json.loads((root / "systems" / "box.json").read_text())
    assert system["system_name"] == "box" and system["division"] == "open" and system["host_processor_model_name"]
    assert system["status"] == "rdi" and system["system_type"] == "edge" and system["accelerators_per_node"] == "0"
    assert system["cooling"] == ""  # what no machine can tell stays empty (and is said)
    assert (root / "src" / "README.md").is_file()
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
    # compliance: a failed test leaves its run out; of a configuration's runs, one whose TEST01 passed by MLCommons'
    # rules goes in even when a newer one ran none; the closed division asks TEST01 of BERT
    test01 = {"compliance_test": "TEST01", "compliance_passed": True, "compliance_mismatched_samples": 0}
    passed = {**perf, **test01, "uid": "t" * 32}
    failed05 = {**perf, "compliance_test": "TEST05", "compliance_passed": False, "uid": "f" * 32}
    entries, refused = choose([passed, failed05, acc, {**perf, "uid": "n" * 32}])
    assert [e.performance["uid"] for e in entries] == [passed["uid"]]
    assert any("TEST05 compliance test failed" in r for r in refused)
    assert any("whose TEST01 passed goes in instead" in r for r in refused)
    old = {**passed, "compliance_mismatched_samples": None}
    del old["compliance_mismatched_samples"]  # a TEST01 of a bertbench from before MLCommons' rules
    entries, refused = choose([old, acc], "closed")
    assert not entries and "closed division needs a TEST01" in refused[0]
    assert [e.performance["uid"] for e in choose([passed, acc], "closed")[0]] == [passed["uid"]]


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
