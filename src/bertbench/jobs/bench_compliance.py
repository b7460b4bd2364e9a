"""`bench --compliance TEST01|TEST05`: MLPerf's audited runs beside the main test, verified in MLPerf's words
(verify_accuracy.txt, verify_performance.txt), with the verdict for the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.bench.codec import LogFormat, decode_sample
from bertbench.bench.compliance import verify_accuracy, verify_performance, write_audit_config
from bertbench.bench.loadgen_logs import ACCURACY
from bertbench.bench.loadgen_metrics import performance_metrics
from bertbench.bench.loadgen_run import SCENARIOS
from bertbench.console import info, warn
from bertbench.jobs.bench_run import BenchRun, LoadGenPass, loadgen_pass


def compliance_test(
    run: BenchRun, batch_size: int, output_dir: Path, estimate: float, main: LoadGenPass
) -> dict[str, Any]:
    """The compliance test's runs beside the main one (whose mode decides which of the two references it is), its
    verification in MLPerf's words (verify_accuracy.txt, verify_performance.txt), and the verdict."""
    config, task = run.config, run.task
    test = config.compliance
    folder = output_dir / "compliance" / test
    performance = main if config.mode == "performance" else None
    if performance is None:
        performance = loadgen_pass(run, batch_size, folder / "performance_reference", "performance", estimate)
    # the audited runs plan from the performance run's own throughput: closer than the warm-up's estimate, so that
    # an Offline run issues enough samples to last its minimum duration
    measured = performance_metrics(
        performance.plan, performance.summary, performance.detail, performance.stats, performance.issued, 1.0
    )["throughput"]
    estimate = measured or estimate
    audit = write_audit_config(test, folder, run.dataset.num_samples, SCENARIOS[config.scenario])
    audited = loadgen_pass(
        run, batch_size, folder / "performance", "performance", estimate, audit, test == "TEST01", test == "TEST05"
    )
    facts: dict[str, Any] = {"compliance_test": test}
    verdicts = []
    if test == "TEST01":
        accuracy = main if config.mode == "accuracy" else None
        if accuracy is None:
            accuracy = loadgen_pass(run, batch_size, folder / "accuracy", "accuracy", estimate)
        fmt = LogFormat(config.output_dtype, config.output_transposed)
        verdict = verify_accuracy(
            accuracy.log_dir / ACCURACY,
            audited.log_dir / ACCURACY,
            lambda data: decode_sample(data, task.outputs, task.per_token_outputs, fmt),
        )
        (folder / "verify_accuracy.txt").write_text("\n".join(verdict.lines) + "\n")
        verdicts.append(verdict)
        facts.update(verdict.facts)
    verdict = verify_performance(performance.summary, audited.summary, config.scenario, test)
    (folder / "verify_performance.txt").write_text("\n".join(verdict.lines) + "\n")
    verdicts.append(verdict)
    facts.update(verdict.facts)
    facts["compliance_passed"] = all(v.passed for v in verdicts)
    facts["compliance_contended"] = audited.watch.contended or performance.watch.contended
    line = "; ".join(v.lines[-1] for v in verdicts)
    (info if facts["compliance_passed"] else warn)(f"{test} at batch {batch_size}: {line} ({folder})")
    return facts
