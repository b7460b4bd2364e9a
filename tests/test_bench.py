"""`bertbench bench`: MLPerf LoadGen scenarios end to end, accuracy mode equal to eval, pinned instances, the null
backend, the quiet check, and bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bertbench.bench.quiet import quiet_check
from bertbench.cli import main

from .conftest import SQUAD_DEV, SST2_DEV, two_single_core_instances

pytestmark = pytest.mark.e2e  # whole commands, processes and runtimes: `pytest -m 'not e2e'` skips them

FAST = ["--min-duration", "1", "--no-progress", "--max-samples", "40"]


def bench(tmp_path: Path, cache_dir: Path, name: str, *extra: str, model: str = "bert-tiny", task: str = "squad"):
    out = tmp_path / name
    data = SQUAD_DEV if task == "squad" else SST2_DEV
    argv = [
        "bench",
        task,
        "--model",
        model,
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache_dir),
        *FAST,
        *extra,
    ]
    return main(argv), out


def summary_figures_match(record: dict, summary: str) -> None:
    """Every loadgen_* figure in the record is a number printed in LoadGen's summary, and none is invented."""
    printed = {float(v) for v in re.findall(r":\s*(-?\d+(?:\.\d+)?)\s*$", summary, flags=re.M)}
    figures = {k: v for k, v in record.items() if k.startswith("loadgen_") and isinstance(v, int | float)}
    assert len(figures) > 10
    for key, value in figures.items():
        assert float(value) in printed, key


@pytest.mark.parametrize("scenario", ["offline", "singlestream"])
def test_scenario_through_loadgen_end_to_end(tmp_path: Path, cache_dir: Path, scenario: str) -> None:
    code, out = bench(tmp_path, cache_dir, scenario, "--scenario", scenario, "--batch-size", "8")
    assert code == 0
    record = json.loads((out / "metrics.json").read_text())
    summary = (out / "loadgen" / "mlperf_log_summary.txt").read_text()
    assert (out / "loadgen" / "mlperf_log_detail.txt").stat().st_size > 0
    assert record["result_valid"] == ("Result is : VALID" in summary)
    assert record["scenario"] == scenario and record["mode"] == "performance" and record["batch_size"] == 8
    summary_figures_match(record, summary)
    if scenario == "offline":
        assert record["throughput"] == record["loadgen_samples_per_second"]
        assert record["num_samples"] == record["loadgen_samples_per_query"]
    else:
        assert record["throughput"] == pytest.approx(record["loadgen_qps_without_loadgen_overhead"], rel=1e-3)
        assert record["latency_p90_ms"] == record["loadgen_90.00_percentile_latency_ns"] / 1e6
    assert record["latency_p50_ms"] <= record["latency_p90_ms"] <= record["latency_p99_ms"] <= record["latency_max_ms"]
    assert sum(i["samples"] for i in record["per_instance"]) == record["num_samples"]
    assert isinstance(record["contended"], bool) and record["probe_gflops"] > 0
    if record["quiet_roof_known"]:
        assert 0 < record["roof_fraction"] < 1.5  # FP32: FLOPs fed over the quiet roof
    else:  # the machine was busy whenever a roof was measured: no fraction, and the record says why
        assert record["roof_fraction"] is None and "no quiet roof" in record["roof_fraction_note"]
        assert "no quiet roof known" in record["quiet_basis"]
    for key in (
        "cpu_model",
        "isa_avx2",
        "physical_cores",
        "memory_gib",
        "load_avg_before",
        "load_avg_after",
        "git_sha",
        "mlcommons_loadgen_version",
        "instances",
        "cores_per_instance",
    ):
        assert key in record, key


def evaluated_rule(folder: Path) -> str:
    return json.loads((folder / "metrics.json").read_text())["answer_text"]


def test_accuracy_mode_scores_the_accuracy_log_exactly_as_eval(
    tmp_path: Path, cache_dir: Path, tiny_squad_model: Path
) -> None:
    common = ["--max-seq-length", "256", "--batch-size", "8", "--threads", "2"]
    code, out = bench(tmp_path, cache_dir, "acc", "--mode", "accuracy", *common, model=str(tiny_squad_model))
    assert code == 0
    evaluation = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                "squad",
                "--model",
                str(tiny_squad_model),
                "--data",
                str(SQUAD_DEV),
                "--output-dir",
                str(evaluation),
                "--cache-dir",
                str(cache_dir),
                "--max-samples",
                "40",
                "--no-progress",
                "--answer-text",
                "mlperf",  # bench's default rule (MLPerf's scorer); eval's own default is Hugging Face's
                *common,
            ]
        )
        == 0
    )
    benched = json.loads((out / "metrics.json").read_text())
    assert benched["answer_text"] == "mlperf" and evaluated_rule(evaluation) == "mlperf"
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    assert benched["f1"] > 1  # a (lightly) trained model: predictions are not all empty
    assert benched["f1"] == evaluated["f1"] and benched["exact_match"] == evaluated["exact_match"]
    assert benched["accuracy_log_samples"] == evaluated["num_samples"]
    assert json.loads((out / "predictions.json").read_text()) == json.loads(
        (evaluation / "predictions.json").read_text()
    )
    assert benched["result_valid"] is None  # LoadGen judges no performance in AccuracyOnly


def test_server_with_an_impossible_target_is_invalid_with_loadgens_reason(tmp_path: Path, cache_dir: Path) -> None:
    code, out = bench(
        tmp_path,
        cache_dir,
        "server",
        "--scenario",
        "server",
        "--target-qps",
        "3000",
        "--target-latency-ms",
        "1",
        "--batch-size",
        "4",
        "--max-duration",
        "2",
    )
    assert code == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["result_valid"] is False
    # LoadGen's failed checks, said as failures; the advice follows from its figures: a 1 ms bound that even the
    # fastest query missed cannot be met by lowering the QPS (LoadGen's own "Reduce target QPS" would mislead)
    assert "Performance constraints not satisfied" in record["result_invalid_reasons"]
    assert record["loadgen_min_latency_ns"] / 1e6 > 1.0 and "no target QPS can meet it" in record["result_advice"]
    assert record["target_qps"] == 3000 and record["loadgen_target_qps"] == 3000


def test_two_pinned_instances_share_the_work(tmp_path: Path, cache_dir: Path) -> None:
    two, pinned = two_single_core_instances()
    code, out = bench(
        tmp_path,
        cache_dir,
        "two",
        *two,
        "--batch-size",
        "4",
        "--env",
        "BERTBENCH_PROBE=1",
        task="sst2",
    )
    assert code == 0
    record = json.loads((out / "metrics.json").read_text())
    instances = record["per_instance"]
    assert record["instances"] == 2 and record["cores_per_instance"] == 1 and record["threads"] == 1
    assert [i["cores"] for i in instances] == pinned
    assert len({i["pid"] for i in instances}) == 2
    assert all(i["samples"] > 0 for i in instances)
    assert sum(i["samples"] for i in instances) == record["num_samples"] == record["loadgen_samples_per_query"]
    assert record["env"] == {"BERTBENCH_PROBE": "1"}


def test_null_backend_measures_the_harness_and_a_batch_list_sweeps(tmp_path: Path, cache_dir: Path) -> None:
    code, out = bench(tmp_path, cache_dir, "null", "--backend", "null", "--batch-size", "1,8")
    assert code == 0
    null = {bs: json.loads((out / f"bs{bs}" / "metrics.json").read_text()) for bs in (1, 8)}
    assert all(r["backend"] == "null" and r["roof_fraction"] is None for r in null.values())
    code, out = bench(tmp_path, cache_dir, "model", "--batch-size", "8")
    model = json.loads((out / "metrics.json").read_text())
    # The harness alone is far faster than any model: a ceiling, not a result.
    assert null[8]["throughput"] > 2 * model["throughput"]


def test_quiet_check_flags_a_machine_kept_busy(tmp_path: Path) -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        check = quiet_check(2, tmp_path, lambda: [])
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert check.contended and "other processes used" in check.reason()
    assert check.facts()["contended"] is True and check.other_cpu_cores > 1.0


def test_require_quiet_refuses_a_busy_machine(tmp_path: Path, cache_dir: Path, capsys) -> None:
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        code, out = bench(tmp_path, cache_dir, "busy", "--require-quiet", "--batch-size", "8")
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "contended" in err[-1] and "--require-quiet" in err[-1]
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--instances", "4", "--cores-per-instance", "2"], "--oversubscribe"),
        (["--target-qps", "0"], "--target-qps"),
        (["--scenario", "turbo"], "--scenario"),
        (["--batch-size", "8,0"], "--batch-size"),
        (["--env", "NOVALUE"], "--env"),
    ],
)
def test_bad_bench_input_is_one_line_and_exit_2(tmp_path: Path, capsys, extra: list[str], expected: str) -> None:
    code, out = bench(tmp_path, tmp_path / "cache", "bad", *extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and expected in err
    assert not out.exists()


def test_multistream_through_loadgen(tmp_path: Path, cache_dir: Path) -> None:
    code, out = bench(
        tmp_path, cache_dir, "ms", "--scenario", "multistream", "--batch-size", "8", "--samples-per-query", "4"
    )
    assert code == 0
    record = json.loads((out / "metrics.json").read_text())
    summary = (out / "loadgen" / "mlperf_log_summary.txt").read_text()
    assert record["result_valid"] == ("Result is : VALID" in summary)
    summary_figures_match(record, summary)
    assert record["loadgen_samples_per_query"] == 4 and record["samples_per_query"] == 4
    assert record["throughput"] == pytest.approx(4 * 1e9 / record["loadgen_mean_latency_ns"])
    assert sum(i["samples"] for i in record["per_instance"]) == record["num_samples"]
    assert record["num_samples"] % 4 == 0


def test_roof_is_measured_and_cached_per_thread_count(tmp_path: Path) -> None:
    from bertbench.bench.quiet import cached_roof
    from bertbench.hardware import available_cores
    from bertbench.results.store import ResultsStore

    assert main(["bench", "--roof", "--cache-dir", str(tmp_path), "--store", str(tmp_path / "s.sqlite")]) == 0
    rows = ResultsStore(tmp_path / "s.sqlite").runs()
    assert [r.config["threads"] for r in rows] == list(range(1, available_cores() + 1))
    for row in rows:
        roof = row.metrics
        assert row.command == "bench-roof" and row.status == "finished"
        assert 0 < roof["roof_min_gflops"] <= roof["roof_median_gflops"] <= roof["roof_gflops"]
        cached = cached_roof(roof["threads"], tmp_path)
        # only a quiet measurement becomes the roof later runs compare with
        assert (cached is not None and cached["roof_gflops"] == roof["roof_gflops"]) == roof["quiet"]


def test_compiled_accuracy_mode_computes_its_fp32_reference_before_the_instances(
    tmp_path: Path, tiny_squad_model: Path, capsys
) -> None:
    """A bug the review found: `bench --compile --mode accuracy` took itself for the FP32 reference when planning
    (compile ignored) but not when scoring, so the reference was computed while the instances still ran."""
    fresh_cache = tmp_path / "cache"  # no reference cached yet: this run must compute it, and before the instances
    common = ["--max-seq-length", "256", "--batch-size", "8", "--threads", "2", "--compile"]
    capsys.readouterr()
    code, out = bench(tmp_path, fresh_cache, "compiled", "--mode", "accuracy", *common, model=str(tiny_squad_model))
    assert code == 0
    err = capsys.readouterr().err
    assert err.index("computing the FP32 reference") < err.index("instance 0 ready")
    record = json.loads((out / "metrics.json").read_text())
    assert record["compiled"] is True and record["reference_cache_hit"] is True
    assert record["relative_accuracy"] == pytest.approx(1.0, abs=0.02)


SUMMARY_ENDED_EARLY = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Offline
Mode     : PerformanceOnly
Samples per second: 1.04637e+06
Result is : INVALID
  Min duration satisfied : NO
  Min queries satisfied : Yes
  Early stopping satisfied: Yes
Recommendations:
 * Increase expected QPS so the loadgen pre-generates a larger (coalesced) query.
"""


def test_an_offline_test_that_ended_early_on_our_own_target_is_planned_again(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bertbench.bench.loadgen_logs import parse_summary
    from bertbench.jobs.bench_run import ended_early as _ended_early

    summary_file = tmp_path / "mlperf_log_summary.txt"
    summary_file.write_text(SUMMARY_ENDED_EARLY)
    summary = parse_summary(summary_file)
    assert summary["loadgen_samples_per_second"] == pytest.approx(1.04637e6)  # LoadGen's exponent form is read

    def run(target_qps: float | None = None, conf_keys: frozenset[str] = frozenset()) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(target_qps=target_qps), conf_keys=conf_keys)

    def test(scenario: str = "offline", mode: str = "performance", **changes) -> SimpleNamespace:
        return SimpleNamespace(plan=SimpleNamespace(scenario=scenario, mode=mode), summary={**summary, **changes})

    assert _ended_early(run(), test())
    assert not _ended_early(run(target_qps=500.0), test())  # the user's target is the user's to change
    assert not _ended_early(run(conf_keys=frozenset({"target_qps"})), test())  # so is their user.conf's
    assert not _ended_early(run(), test(scenario="server"))
    assert not _ended_early(run(), test(loadgen_result="VALID", loadgen_failed_checks=[]))
    failed_twice = ["Min duration satisfied", "Min queries satisfied"]
    assert not _ended_early(run(), test(loadgen_failed_checks=failed_twice))
