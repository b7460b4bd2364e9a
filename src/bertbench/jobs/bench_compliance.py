"""`bench --compliance TEST01|TEST05`: MLPerf's audited run beside the main test, its references, and the verdicts
in MLCommons' words.

The folder holds MLPerf's own TEST tree, as compliance/TEST01/run_verification.py writes it into a submission
(`compliance/TESTxx/`: verify_accuracy.txt, verify_performance.txt, accuracy/mlperf_log_accuracy.json and
performance/run_1/ with the audited run's summary and detail), the audited run's whole LoadGen folder with its
audit.config (`compliance/TESTxx-audit/`), and the reference runs the main test does not provide
(`compliance/references/performance/`, `compliance/references/accuracy/`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bertbench.bench.codec import LogFormat, decode_sample
from bertbench.bench.compliance import Verdict, verify_accuracy, verify_performance, write_audit_config
from bertbench.bench.loadgen_logs import ACCURACY, DETAIL, SUMMARY
from bertbench.bench.loadgen_metrics import performance_metrics
from bertbench.bench.loadgen_run import SCENARIOS
from bertbench.console import info, warn
from bertbench.jobs.bench_run import BenchRun, LoadGenPass, loadgen_pass


def _write(path: Path, verdict: Verdict) -> None:
    path.write_text("\n".join(verdict.lines) + "\n")


def _mlperf_tree(folder: Path, audited: LoadGenPass, test: str) -> None:
    """What run_verification.py copies into the submission's TEST folder: the audited run's logs."""
    (folder / "performance" / "run_1").mkdir(parents=True, exist_ok=True)
    for name in (SUMMARY, DETAIL):
        shutil.copy2(audited.log_dir / name, folder / "performance" / "run_1" / name)
    if test == "TEST01":
        (folder / "accuracy").mkdir(parents=True, exist_ok=True)
        shutil.copy2(audited.log_dir / ACCURACY, folder / "accuracy" / ACCURACY)


def compliance_test(
    run: BenchRun, batch_size: int, output_dir: Path, estimate: float, main: LoadGenPass
) -> dict[str, Any]:
    """The compliance test's runs beside the main one (whose mode decides which of the two references it is), its
    verification by MLCommons' rules, and the verdict."""
    config, task = run.config, run.task
    test = config.compliance
    root = output_dir / "compliance"
    folder = root / test
    performance = main if config.mode == "performance" else None
    if performance is None:
        performance = loadgen_pass(run, batch_size, root / "references" / "performance", "performance", estimate)
    # the audited run plans from the performance run's own throughput: closer than the warm-up's estimate, so that
    # an Offline run issues enough samples to last its minimum duration
    measured = performance_metrics(
        performance.plan, performance.summary, performance.detail, performance.stats, performance.issued, 1.0
    )["throughput"]
    estimate = measured or estimate
    audit_dir = root / f"{test}-audit"
    audit = write_audit_config(test, audit_dir, SCENARIOS[config.scenario])
    audited = loadgen_pass(
        run, batch_size, audit_dir, "performance", estimate, audit, test == "TEST01", test == "TEST05"
    )
    _mlperf_tree(folder, audited, test)
    facts: dict[str, Any] = {"compliance_test": test}
    verdicts = []
    if test == "TEST01":
        accuracy = main if config.mode == "accuracy" else None
        if accuracy is None:
            accuracy = loadgen_pass(run, batch_size, root / "references" / "accuracy", "accuracy", estimate)
        fmt = LogFormat(config.output_dtype, config.output_transposed)
        verdict = verify_accuracy(
            accuracy.log_dir / ACCURACY,
            audited.log_dir / ACCURACY,
            lambda data: decode_sample(data, task.outputs, task.per_token_outputs, fmt),
        )
        _write(folder / "verify_accuracy.txt", verdict)
        verdicts.append(verdict)
        facts.update(verdict.facts)
    verdict = verify_performance(performance.log_dir / DETAIL, audited.log_dir / DETAIL, test)
    _write(folder / "verify_performance.txt", verdict)
    verdicts.append(verdict)
    facts.update(verdict.facts)
    facts["compliance_passed"] = all(v.passed for v in verdicts)
    facts["compliance_contended"] = audited.watch.contended or performance.watch.contended
    facts["compliance_reference_dirs"] = {"performance": str(performance.log_dir.resolve())}
    if test == "TEST01":
        facts["compliance_reference_dirs"]["accuracy"] = str(accuracy.log_dir.resolve())
    line = "; ".join(v.lines[-1] for v in verdicts)
    (info if facts["compliance_passed"] else warn)(f"{test} at batch {batch_size}: {line} ({folder})")
    return facts
