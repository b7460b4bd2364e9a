"""`bertbench run`: a workload's cases, in order, each in its own process (a crash or an OOM in one is recorded as
failed and the run goes on). A case that finished before with the same config, code version and data is skipped,
so an interrupted run resumes; the end is the KPI table and an HTML report."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from bertbench.configs import RunConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError
from bertbench.jobs.case_folders import check_owner, claim, held_files
from bertbench.lifetime import TETHER_ENV
from bertbench.locking import exclusive
from bertbench.progress import progress_bar
from bertbench.results.console import print_rows_table, stdout_console
from bertbench.results.record import RUN_UID_ENV, RunRecord
from bertbench.results.store import ResultsStore
from bertbench.workloads import Case, Workload, load_workload
from bertbench.workloads.plan import LOCK_FILE, PlannedCase, command_line, plan_cases, select_cases


class CasesFailed(BertbenchError):
    """Some cases failed (exit 1; the line says how many and which)."""

    def __init__(self, failed: list[str], records: list[RunRecord]) -> None:
        super().__init__(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        self.records = records


def _resume_flag(planned: PlannedCase, redo: bool) -> list[str]:
    """A case that ran before without finishing (in its own folder: see case_folders): training continues from
    its checkpoints, the rest starts over (and so does everything that --force redoes)."""
    directory = planned.directory
    if not held_files(directory):
        return []
    if not redo and planned.case.job in ("finetune", "pretrain") and any((directory / "checkpoints").glob("step-*")):
        return ["--resume"]
    return ["--overwrite"]


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _run_case(planned: PlannedCase, store: ResultsStore, workload: Workload, log: Path, redo: bool) -> tuple[str, str]:
    """Run one case in its own process; returns (status, one-line detail)."""
    case = planned.case
    uid = store.start(
        case.job,
        {"argv": planned.argv, "case": case.name},
        str(planned.directory),
        workload=workload.name,
        case_name=case.name,
        fingerprint=planned.fingerprint,
    )
    argv = command_line(planned, _resume_flag(planned, redo), tethered=True)
    env = {**os.environ, RUN_UID_ENV: uid, TETHER_ENV: "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    claim(planned.directory, workload.name, case.name, planned.fingerprint)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(argv) + "\n")
        handle.flush()
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            code = process.wait()
        except BaseException:
            # Ctrl-C or SIGTERM: stop the case (its own handler saves nothing half-written), then stop.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            row = store.get(uid)
            if row is not None and row.status == "running":
                store.end(uid, "interrupted", "bertbench run was interrupted")
            raise
    row = store.get(uid)
    if code == 0 and row is not None and row.status == "finished":
        return "finished", ""
    detail = _last_line(log) or f"exit code {code}"
    if row is not None and row.status == "running":
        reason = "killed" if code < 0 else f"exit code {code}"
        store.end(uid, "failed", f"{reason}, no result: {detail}")
    return "failed", detail


def run_workload(config: RunConfig) -> RunRecord | None:
    """`bertbench run`: returns the run's own record (cases record themselves)."""
    workload = load_workload(config.workload)
    cases, matched = select_cases(workload, config.select)
    if config.list_cases:
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
        return None
    planned = plan_cases(workload, config, cases)
    if config.dry_run:
        for item in planned:
            stdout_console.print(shlex.join(command_line(item)), soft_wrap=True)
        return None
    root = config.output_root / workload.name
    with exclusive(root / LOCK_FILE, f"{root} (workload {workload.name})", wait=config.wait):
        return _run_planned(config, workload, cases, matched, planned, root)


def _run_planned(
    config: RunConfig,
    workload: Workload,
    cases: list[Case],
    matched: set[str],
    planned: list[PlannedCase],
    root: Path,
) -> RunRecord:
    """Run the planned cases, holding the workload folder's lock; then the KPI table and the report."""
    for item in planned:  # every folder is checked before the first case runs
        check_owner(item.directory, workload.name, item.case.name)
    store = ResultsStore(config.store)
    logs = root / "logs"
    start = time.perf_counter()
    outcome: dict[str, str] = {}
    with progress_bar(f"run {workload.name}", total=len(planned), enabled=config.show_progress) as advance:
        for item in planned:
            name = item.case.name
            blocked = [n for n in item.case.needs if outcome.get(n) == "failed"]
            forced = config.force and name in matched  # --force redoes the selected cases, not what they need
            earlier = None if forced else store.finished_case(workload.name, name, item.fingerprint)
            if blocked:
                outcome[name] = "failed"
                warn(f"{name}: not run, it needs {', '.join(blocked)}, which failed")
            elif earlier is not None and earlier.output_dir and Path(earlier.output_dir).exists():
                outcome[name] = "skipped"
                info(f"{name}: finished before with the same config, code and data (--force reruns it)")
            else:
                began = time.perf_counter()
                status, detail = _run_case(item, store, workload, logs / f"{name}.log", forced)
                outcome[name] = status
                took = time.perf_counter() - began
                if status == "finished":
                    info(f"{name}: finished in {took:.0f} s")
                else:
                    warn(f"{name}: FAILED after {took:.0f} s ({detail}); log: {logs / f'{name}.log'}")
            advance(1)
    failed = [n for n, s in outcome.items() if s == "failed"]
    from bertbench.jobs.report import workload_report

    html_path = root / "report.html"
    workload_report(store, workload.name, [c.name for c in cases], html_path)
    info(f"HTML report: {html_path.resolve()}")
    record = RunRecord(
        "run",
        {"workload": workload.name, "workload_file": str(workload.path), "cases": [c.name for c in cases]},
        {
            "finished": sum(s == "finished" for s in outcome.values()),
            "skipped": sum(s == "skipped" for s in outcome.values()),
            "failed": len(failed),
            "wall_s": time.perf_counter() - start,
            "report": str(html_path.resolve()),
        },
    )
    if failed:
        raise CasesFailed(failed, [record])
    return record
