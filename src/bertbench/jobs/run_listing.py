"""What `bertbench run` prints before (or instead of) running: the case list (`--list`), the plan with each case's
estimate, and every case's command line (`--dry-run`, one per node for a case across nodes)."""

from __future__ import annotations

import shlex
from pathlib import Path

from bertbench.configs import RunConfig
from bertbench.console import info, warn
from bertbench.results.console import print_rows_table, stdout_console
from bertbench.results.store import ResultsStore, default_store_path
from bertbench.workloads import Case, Workload
from bertbench.workloads.estimate import Estimate, duration_text, estimate_cases
from bertbench.workloads.plan import PlannedCase, node_command_lines

PROMISE_S = 600.0  # the main job's promise: the KPI table within ten minutes on a quiet 2-core machine


def print_cases(workload: Workload, cases: list[Case]) -> None:
    """`run --list`: the cases, like ctest -N."""
    rows = [
        {
            "case": c.name,
            "job": f"{c.job} {c.task or ''}".strip(),
            "processes": c.processes,
            "needs": ", ".join(c.needs) or "-",
            "description": c.description or "-",
        }
        for c in cases
    ]
    print_rows_table(f"{workload.name}: {len(cases)} cases ({workload.path})", rows)


def finished_before(store: ResultsStore, workload: Workload, item: PlannedCase) -> bool:
    """The case finished before, on this machine, with the same fingerprint, and its folder is still there."""
    earlier = store.finished_case(workload.name, item.case.name, item.fingerprint)
    return earlier is not None and bool(earlier.output_dir) and Path(earlier.output_dir).exists()


def case_estimates(
    workload: Workload, planned: list[PlannedCase], store: ResultsStore | None, config: RunConfig, matched: set[str]
) -> dict[str, Estimate]:
    """Each case's estimate; a case that will be skipped (finished before) costs nothing."""
    estimates = estimate_cases(planned, store, workload.name, config.cache_dir)
    for item in planned:
        forced = config.force and item.case.name in matched
        if store is not None and not forced and finished_before(store, workload, item):
            estimates[item.case.name] = Estimate(0.0, "skip")
    return estimates


def print_plan(workload: Workload, planned: list[PlannedCase], estimates: dict[str, Estimate]) -> None:
    """The cases with what each will take, first (stderr), and a warning when the whole is over ten minutes."""
    known = [estimates[p.case.name].seconds for p in planned]
    total = sum(s for s in known if s is not None)
    unknown = sum(s is None for s in known)
    info(
        f"run {workload.name}: {len(planned)} cases, estimated {duration_text(total)}"
        + (f" (+ {unknown} without an estimate)" if unknown else "")
    )
    for item in planned:
        job = f"{item.case.job} {item.case.task or ''}".strip()
        info(f"  {item.case.name} ({job}): {estimates[item.case.name].text()}")
    if total > PROMISE_S:
        warn(f"this run is estimated at {duration_text(total)}, more than {PROMISE_S / 60:.0f} minutes")


def print_dry_run(config: RunConfig, workload: Workload, planned: list[PlannedCase], matched: set[str]) -> None:
    """`run --dry-run`: the plan, then the exact command line of every case (of every node of a case)."""
    existing = config.store or default_store_path()
    store = ResultsStore(existing, read_only=True) if Path(existing).is_file() else None
    print_plan(workload, planned, case_estimates(workload, planned, store, config, matched))
    for item in planned:
        lines = node_command_lines(item)
        for rank, line in enumerate(lines):
            if len(lines) > 1:  # what to start on each node, in the same folder (shared) or a copy of it
                stdout_console.print(f"# {item.case.name}, node {rank} ({item.case.nodes[rank]}):", soft_wrap=True)
            stdout_console.print(shlex.join(line), soft_wrap=True)
