"""MLPerf Inference's compliance tests, through LoadGen's own audit mechanism (an `audit.config` LoadGen reads at the
start of a test):

- TEST01, accuracy in performance mode: a performance run that also logs the responses of a random subset of its
  samples; they must be the accuracy run's responses for the same samples, and the run's performance within 10 %
  of the performance run's. Identical bytes pass. A path whose outputs depend on the batch a sample is in (dynamic
  INT8 quantizes each batch's activations with that batch's range) logs slightly different logits: it passes when
  every logged sample still gives the same prediction (argmax of each output), and the largest logit difference is
  recorded; any other difference fails.
- TEST05, other seeds: a performance run with MLPerf's alternate QSL, sample-index and schedule seeds (LoadGen's own,
  from the mlperf.conf built into it; this LoadGen takes the test05 flag from its settings, not from an audit file,
  so the flag is set on the settings and the audit.config written beside the logs says the same); its score must be
  within 5 % of the performance run's (20 % for SingleStream latencies under 0.2 ms and MultiStream under 1.6 ms,
  as MLPerf's verify_performance.py allows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.bench.loadgen_logs import read_accuracy_entries, read_accuracy_log

TEST01_ACCURACY_SEED = 720381539243781796
TEST01_SAMPLING_TARGET = 64  # samples whose responses are logged, at most (our QSLs are small)
TEST05_SEEDS = ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")
TEST01_PERFORMANCE_SHARE = 0.90


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


def write_audit_config(test: str, directory: Path, num_samples: int, scenario: str) -> Path:
    """The audit.config of `test` (all models, all scenarios) in `directory`."""
    lines = ["# MLPerf compliance test " + test + " (bertbench): key = value, model.scenario.key", "*.*.mode = 2"]
    if test == "TEST01":
        lines += [
            f"*.*.accuracy_log_rng_seed = {TEST01_ACCURACY_SEED}",
            f"*.*.accuracy_log_sampling_target = {min(TEST01_SAMPLING_TARGET, num_samples)}",
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
    accuracy_log: Path, compliance_log: Path, decode: Callable[[bytes], dict[str, np.ndarray]]
) -> Verdict:
    """TEST01's accuracy check: every response the compliance run logged (a sample issued twice is checked twice:
    keyed by sample, a changed response could hide behind a later good one) against the accuracy run's."""
    reference, logged = read_accuracy_log(accuracy_log), read_accuracy_entries(compliance_log)
    identical = same_prediction = different = missing = 0
    largest = 0.0
    for index, data in logged:
        if index not in reference:
            missing += 1
        elif data == reference[index]:
            identical += 1
        else:
            ours, theirs = decode(data), decode(reference[index])
            largest = max(largest, *(float(np.abs(ours[k] - theirs[k]).max()) for k in ours))
            if _prediction(ours) == _prediction(theirs):
                same_prediction += 1
            else:
                different += 1
    passed = bool(logged) and not missing and not different
    facts = {
        "compliance_logged_samples": len(logged),
        "compliance_identical_samples": identical,
        "compliance_same_prediction_samples": same_prediction,
        "compliance_different_samples": different,
        "compliance_max_logit_difference": largest,
    }
    lines = [
        f"{len(logged)} samples logged in performance mode: {identical} identical to the accuracy run, "
        f"{same_prediction} with the same prediction (largest logit difference {largest:.3g}), {different} "
        f"different, {missing} not in the accuracy log",
        f"Accuracy check pass: {passed}",
    ]
    return Verdict(passed, facts, lines)


def _score(summary: dict[str, Any], scenario: str) -> float | None:
    """The figure MLPerf compares: samples/s (Offline, Server) or the early-stopping latency estimate in ns."""
    if scenario == "offline":
        return summary.get("loadgen_samples_per_second")
    if scenario == "server":
        return summary.get("loadgen_completed_samples_per_second")
    key = "90th" if scenario == "singlestream" else "99th"
    notes = [n for n in summary.get("loadgen_notes", []) if f"Early stopping {key} percentile estimate" in n]
    if notes:
        return float(notes[0].rsplit(":", 1)[1])
    percentile = "90.00" if scenario == "singlestream" else "99.00"
    return summary.get(f"loadgen_{percentile}_percentile_latency_ns")


def verify_performance(reference: dict[str, Any], test: dict[str, Any], scenario: str, which: str) -> Verdict:
    """TEST01: within 10 % of the performance run; TEST05: within 5 % (20 % for short stream latencies)."""
    ref, got = _score(reference, scenario), _score(test, scenario)
    if ref is None or got is None or test.get("loadgen_result") != "VALID":
        reason = "the test's result is INVALID" if test.get("loadgen_result") != "VALID" else "no score to compare"
        return Verdict(False, {"compliance_performance_ratio": None}, [f"TEST FAIL: {reason}"])
    if which == "TEST01":
        threshold = 1 - TEST01_PERFORMANCE_SHARE
    else:
        short = (scenario == "singlestream" and ref <= 200_000) or (scenario == "multistream" and ref <= 1_600_000)
        threshold = 0.20 if short else 0.05
    if scenario in ("offline", "server"):
        passed = got > ref * (1 - threshold)
    else:
        passed = got < ref * (1 + threshold)
    # MLPerf's own words first (its submission checker looks for "TEST PASS"), then what failed, in numbers
    bound = "more" if scenario in ("offline", "server") else "less"
    failure = f"TEST FAIL: Test score invalid (test score {got / ref:.3f} of the reference; needs {bound} than "
    failure += f"{1 - threshold if bound == 'more' else 1 + threshold:.2f})"
    lines = [f"reference score = {ref}", f"test score = {got}", "TEST PASS" if passed else failure]
    return Verdict(passed, {"compliance_performance_ratio": got / ref if ref else None}, lines)
