"""MLPerf Inference's compliance tests, through LoadGen's own audit mechanism (an `audit.config` LoadGen reads at the
start of a test), verified by MLCommons' rules so that a verdict here is the one its scripts print on the same logs
(compliance/TEST01/run_verification.py, verify_accuracy.py, verify_performance.py):

- TEST01, accuracy in performance mode: a performance run (MLPerf's bert audit.config: the accuracy-log seed
  720381539243781796, a sampling target of 4,096) that also logs the responses of a random subset of its samples.
  verify_accuracy.py (its default, --dtype byte) counts a logged response as a mismatch when its first byte differs
  from the accuracy run's response to the same sample (or when exactly one of them is empty); it passes when there
  is no mismatch and at least one logged sample is in the accuracy log. Beside that verdict, the record says how
  many responses were identical, how many gave the same prediction (argmax of each output) and the largest logit
  difference. verify_performance.py: both runs VALID and free of LoadGen errors, the same scenario (and Server
  latency bound), and the audited run's score within 10 % of the performance run's either way (20 % for
  SingleStream latencies up to 0.2 ms and MultiStream up to 1.6 ms); the score is the detail log's
  `result_samples_per_second` (Offline), `early_stopping_latency_ss` / `_ms` (SingleStream / MultiStream) or
  `result_completed_samples_per_sec` (Server).
- TEST05, other seeds (retired by MLPerf since v5.0, kept for its use): a performance run with MLPerf's alternate
  QSL, sample-index and schedule seeds (LoadGen's own, from the mlperf.conf built into it; this LoadGen takes the
  test05 flag from its settings, not from an audit file, so the flag is set on the settings and the audit.config
  written beside the logs says the same); its score must be within 5 % of the performance run's (20 % for the short
  stream latencies above).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.bench.loadgen_logs import detail_values

TEST01_ACCURACY_SEED = 720381539243781796
TEST01_SAMPLING_TARGET = 4096  # MLPerf's bert audit.config: responses logged in the audited run, about
TEST05_SEEDS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")


@dataclass
class Verdict:
    """One check of a compliance test: passed or not, its facts, and the lines MLPerf's verification prints."""

    passed: bool
    facts: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def mlperf_test05_seeds(scenario: str) -> dict[str, int]:
    """MLPerf's TEST05 seeds, from the mlperf.conf built into LoadGen (`scenario`: LoadGen's name)."""
    import mlperf_loadgen as lg

    official = lg.TestSettings()
    official.FromConfig("", "bert", scenario, 0)
    return {key: int(getattr(official, f"test05_{key}")) for key in TEST05_SEEDS}


def write_audit_config(test: str, directory: Path, scenario: str) -> Path:
    """The audit.config of `test` (all models, all scenarios) in `directory`."""
    lines = ["# MLPerf compliance test " + test + " (bertbench): key = value, model.scenario.key", "*.*.mode = 2"]
    if test == "TEST01":
        lines += [
            f"*.*.accuracy_log_rng_seed = {TEST01_ACCURACY_SEED}",
            f"*.*.accuracy_log_sampling_target = {TEST01_SAMPLING_TARGET}",
        ]
    else:
        seeds = mlperf_test05_seeds(scenario)
        lines += ["*.*.test05 = 1", *(f"*.*.test05_{key} = {seed}" for key, seed in seeds.items())]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "audit.config"
    path.write_text("\n".join(lines) + "\n")
    return path


def _prediction(outputs: dict[str, np.ndarray]) -> tuple[int, ...]:
    return tuple(int(np.argmax(value)) for _, value in sorted(outputs.items()))


def verify_accuracy(
    accuracy_log: Path,
    compliance_log: Path,
    decode: Callable[[bytes], dict[str, np.ndarray]],
    with_responses: bool = True,
) -> Verdict:
    """TEST01's accuracy check as verify_accuracy.py decides it, with its output lines; beside it, what the logged
    responses say against the accuracy run's (identical bytes, the same prediction, or another answer)."""
    reference_entries = json.loads(accuracy_log.read_text() or "[]")
    test_entries = json.loads(compliance_log.read_text() or "[]")
    reference: dict[int, str] = {}
    duplicates = duplicate_mismatches = 0
    for entry in reference_entries:  # the first response to a sample is the reference
        if entry["qsl_idx"] in reference:
            duplicates += 1
            duplicate_mismatches += reference[entry["qsl_idx"]] != entry["data"]
        else:
            reference[entry["qsl_idx"]] = entry["data"]
    accuracy_run = dict(reference)
    matched = mismatched = missing = 0
    for entry in test_entries:
        index, data = entry["qsl_idx"], bytes.fromhex(entry["data"])
        if index in reference:
            matched += 1
            theirs = bytes.fromhex(reference[index])
            if not data or not theirs:
                mismatched += len(data) != len(theirs)
            elif data[0] != theirs[0]:  # the first element at --dtype byte
                mismatched += 1
        else:
            missing += 1
        reference[index] = entry["data"]  # as verify_accuracy.py: a sample logged again is compared with this one
    passed = mismatched == 0 and matched > 0
    lines = [
        f"num_acc_log_entries = {len(reference_entries)}",
        f"num_acc_log_duplicate_keys = {duplicates}",
        f"num_acc_log_data_mismatch = {duplicate_mismatches}",
        f"num_perf_log_entries = {len(test_entries)}",
        f"num_perf_log_qsl_idx_match = {matched}",
        f"num_perf_log_data_mismatch = {mismatched}",
        f"num_missing_qsl_idxs = {missing}",
        "TEST PASS" if passed else "TEST FAIL",
    ]
    facts = {"compliance_logged_samples": len(test_entries), "compliance_mismatched_samples": mismatched}
    if with_responses:
        facts.update(_responses(accuracy_run, test_entries, decode))
    return Verdict(passed, facts, lines)


def _responses(
    accuracy_run: dict[int, str], logged: list[dict[str, Any]], decode: Callable[[bytes], dict[str, np.ndarray]]
) -> dict[str, Any]:
    """Every logged response against the accuracy run's: identical bytes, the same prediction (a path whose outputs
    depend on the batch, such as dynamic INT8, gives slightly different logits), or another answer."""
    identical = same_prediction = different = 0
    largest = 0.0
    for entry in logged:
        theirs = accuracy_run.get(entry["qsl_idx"])
        if theirs is None:
            continue
        if entry["data"] == theirs:
            identical += 1
            continue
        ours, reference = decode(bytes.fromhex(entry["data"])), decode(bytes.fromhex(theirs))
        largest = max(largest, *(float(np.abs(ours[k] - reference[k]).max()) for k in ours))
        if _prediction(ours) == _prediction(reference):
            same_prediction += 1
        else:
            different += 1
    return {
        "compliance_identical_samples": identical,
        "compliance_same_prediction_samples": same_prediction,
        "compliance_different_samples": different,
        "compliance_max_logit_difference": largest,
    }


# The figure verify_performance.py compares, by scenario (LoadGen's names), from the detail log.
RESULT_FIELD = {
    "Offline": "result_samples_per_second",
    "SingleStream": "early_stopping_latency_ss",
    "MultiStream": "early_stopping_latency_ms",
    "Server": "result_completed_samples_per_sec",
}


@dataclass
class _Result:
    path: Path
    scenario: str
    score: float | None
    valid: bool
    errors: int
    target_latency: Any


def _result(detail: Path) -> _Result:
    values, errors = detail_values(detail)
    scenario = str(values.get("effective_scenario"))
    score = values.get(RESULT_FIELD.get(scenario, ""))
    valid = values.get("result_validity") == "VALID"
    return _Result(
        detail,
        scenario,
        None if score is None else float(score),
        valid,
        errors,
        values.get("effective_target_latency_ns"),
    )


def _threshold(which: str, scenario: str, reference: float) -> float:
    short = (scenario == "SingleStream" and reference <= 200_000) or (
        scenario == "MultiStream" and reference <= 1_600_000
    )
    if which == "TEST01":
        return 0.20 if short else 0.10
    return 0.20 if short else 0.05


def verify_performance(reference_detail: Path, test_detail: Path, which: str) -> Verdict:
    """The performance check of a compliance test as verify_performance.py decides it (TEST05: its own 5 % band),
    with its output lines."""
    lines = ["Verifying performance."]
    results = []
    for result in (_result(reference_detail), _result(test_detail)):
        if result.score is None:
            lines.append(f"TEST FAIL: no {RESULT_FIELD.get(result.scenario, 'result')} in {result.path}")
        elif not result.valid:
            lines.append(f"TEST FAIL: Invalid results in {result.path}")
        elif result.errors:  # verify_performance.py fails on LoadGen errors too (it stops before a verdict)
            lines.append(f"TEST FAIL: {result.errors} LoadGen error(s) in {result.path}")
        else:
            results.append(result)
            continue
        return Verdict(False, {"compliance_performance_ratio": None}, lines)
    reference, test = results
    if test.scenario != reference.scenario:
        lines.append("TEST FAIL: Test and reference scenarios do not match!")
        return Verdict(False, {"compliance_performance_ratio": None}, lines)
    if reference.scenario == "Server" and test.target_latency != reference.target_latency:
        lines.append("TEST FAIL: Server target latency mismatch")
        return Verdict(False, {"compliance_performance_ratio": None}, lines)
    ref, got = float(reference.score), float(test.score)  # type: ignore[arg-type]
    lines += [f"Reference score = {ref}", f"Test score = {got}"]
    threshold = _threshold(which, reference.scenario, ref)
    passed = ref * (1 - threshold) <= got <= ref * (1 + threshold)
    lines.append("TEST PASS" if passed else "TEST FAIL: Test score invalid")
    return Verdict(passed, {"compliance_performance_ratio": got / ref if ref else None}, lines)
