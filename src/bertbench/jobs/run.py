"""`bertbench run`: a workload's cases, in order, each in its own process (a crash or an OOM in one is recorded as
failed and the run goes on). A case that finished before with the same config, code version and data is skipped,
so an interrupted run resumes; the end is the KPI table and an HTML report."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from bertbench.configs import RunConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.jobs.case_folders import check_owner, claim, held_files
from bertbench.jobs.run_progress import RunProgress
from bertbench.lifetime import TETHER_ENV
from bertbench.locking import exclusive
from bertbench.progress import CHANNEL_ENV
from bertbench.results.console import print_rows_table, stdout_console
from bertbench.results.record import RUN_UID_ENV, RunRecord
from bertbench.results.store import ResultsStore, default_store_path
from bertbench.results.tracking import PARENT_ENV, URI_ENV
from bertbench.workloads import Case, Workload, load_workload
from bertbench.workloads.estimate import Estimate, duration_text, estimate_cases
from bertbench.workloads.plan import (
    LOCK_FILE,
    PlannedCase,
    node_command_lines,
    plan_cases,
    runs_here,
    select_cases,
)

PROMISE_S = 600.0  # the main job's promise: the KPI table within ten minutes on a quiet 2-core machine


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


def _free_port() -> int:
    """A TCP port free on loopback now, for the rendezvous of a case whose nodes all run here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_relaying(processes: list[subprocess.Popen], progress: RunProgress) -> int:
    """Wait for the case's processes (one per node), relaying progress twice a second. The first to fail stops
    the others (they would wait for it until the process group's timeout); otherwise the last exit code."""
    while True:
        codes = [process.poll() for process in processes]
        failed = [code for code in codes if code not in (None, 0)]
        if failed:
            for process, code in zip(processes, codes, strict=True):
                if code is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
                process.wait()
            return failed[0]
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.5)
        progress.tick()


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _run_case(
    planned: PlannedCase,
    store: ResultsStore,
    workload: Workload,
    log: Path,
    redo: bool,
    progress: RunProgress,
    tracking: str | None = None,
) -> tuple[str, str]:
    """Run one case in its own process, relaying what it reports; returns (status, one-line detail)."""
    case = planned.case
    uid = store.start(
        case.job,
        {"argv": planned.argv, "case": case.name},
        str(planned.directory),
        workload=workload.name,
        case_name=case.name,
        fingerprint=planned.fingerprint,
    )
    multinode = len(case.nodes) > 1
    lines = node_command_lines(planned, _resume_flag(planned, redo), True, _free_port() if multinode else 0)
    # a case nests under the workload's own row on a tracking server (RUN_UID_ENV names that row until here)
    env = {**os.environ, RUN_UID_ENV: uid, TETHER_ENV: "1", PARENT_ENV: os.environ.get(RUN_UID_ENV, "")}
    if tracking:
        env[URI_ENV] = tracking
    if not multinode:  # --standalone: loopback; across nodes gloo's interface follows the rendezvous address
        env.update({"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"})
    env[CHANNEL_ENV] = str(progress.progress.path.resolve()) if progress.progress else ""
    claim(planned.directory, workload.name, case.name, planned.fingerprint)
    log.parent.mkdir(parents=True, exist_ok=True)
    if progress.progress:
        progress.progress.path.write_text("")
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("".join("$ " + shlex.join(argv) + "\n" for argv in lines))
        handle.flush()
        processes = [
            subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            for argv in lines
        ]
        try:
            code = _wait_relaying(processes, progress)
        except BaseException:
            # Ctrl-C or SIGTERM: stop the case (its own handler saves nothing half-written), then stop.
            for process in processes:
                os.killpg(process.pid, signal.SIGTERM)
            for process in processes:
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


def _finished_before(store: ResultsStore, workload: Workload, item: PlannedCase) -> bool:
    earlier = store.finished_case(workload.name, item.case.name, item.fingerprint)
    return earlier is not None and bool(earlier.output_dir) and Path(earlier.output_dir).exists()


def _estimates(
    workload: Workload, planned: list[PlannedCase], store: ResultsStore | None, config: RunConfig, matched: set[str]
) -> dict[str, Estimate]:
    """Each case's estimate; a case that will be skipped (finished before) costs nothing."""
    estimates = estimate_cases(planned, store, workload.name, config.cache_dir)
    for item in planned:
        forced = config.force and item.case.name in matched
        if store is not None and not forced and _finished_before(store, workload, item):
            estimates[item.case.name] = Estimate(0.0, "skip")
    return estimates


def _print_plan(workload: Workload, planned: list[PlannedCase], estimates: dict[str, Estimate]) -> None:
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
        existing = config.store or default_store_path()
        store = ResultsStore(existing, create=False) if Path(existing).is_file() else None
        _print_plan(workload, planned, _estimates(workload, planned, store, config, matched))
        for item in planned:
            lines = node_command_lines(item)
            for rank, line in enumerate(lines):
                if len(lines) > 1:  # what to start on each node, in the same folder (shared) or a copy of it
                    stdout_console.print(f"# {item.case.name}, node {rank} ({item.case.nodes[rank]}):", soft_wrap=True)
                stdout_console.print(shlex.join(line), soft_wrap=True)
        return None
    elsewhere = [item.case for item in planned if not runs_here(item.case)]
    if elsewhere:
        case = elsewhere[0]
        raise UsageError(
            f"{workload.path}: case {case.name} runs on {', '.join(case.nodes)}, not only this host: start the "
            f"command lines `bertbench run {workload.name} -k {case.name} --dry-run` prints, one on each node"
        )
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
    estimates = _estimates(workload, planned, store, config, matched)
    _print_plan(workload, planned, estimates)
    order = [item.case.name for item in planned]
    with RunProgress(workload.name, order, estimates, live=config.show_progress) as progress:
        for item in planned:
            name = item.case.name
            blocked = [n for n in item.case.needs if outcome.get(n) == "failed"]
            forced = config.force and name in matched  # --force redoes the selected cases, not what they need
            if blocked:
                outcome[name] = "failed"
                warn(f"{name}: not run, it needs {', '.join(blocked)}, which failed")
            elif not forced and _finished_before(store, workload, item):
                outcome[name] = "skipped"
                info(f"{name}: finished before with the same config, code and data (--force reruns it)")
            else:
                began = time.perf_counter()
                progress.case_started(name, logs / f"{name}.progress.jsonl")
                log = logs / f"{name}.log"
                status, detail = _run_case(item, store, workload, log, forced, progress, config.mlflow_uri)
                outcome[name] = status
                took = time.perf_counter() - began
                if status == "finished":
                    info(f"{name}: finished in {duration_text(took)}")
                else:
                    warn(f"{name}: FAILED after {duration_text(took)} ({detail}); log: {logs / f'{name}.log'}")
            progress.case_ended(name, skipped=outcome[name] == "skipped")
    failed = [n for n, s in outcome.items() if s == "failed"]
    from bertbench.jobs.report import workload_report

    html_path = root / "report.html"
    # the page shows every case of the workload (its latest result), not only those this run selected with -k
    workload_report(store, workload.name, [c.name for c in workload.cases], html_path)
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
