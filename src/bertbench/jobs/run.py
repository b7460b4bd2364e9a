"""`bertbench run`: a workload's cases, in order, each in its own process (a crash or an OOM in one is recorded as
failed and the run goes on). A case that finished before with the same config, code version and data is skipped,
so an interrupted run resumes; the end is the KPI table and an HTML report. Processes are started by the launcher;
what is printed before running (or instead of it) is run_listing's."""

from __future__ import annotations

import os
import shlex
import socket
import time
from pathlib import Path

from bertbench.configs import RunConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.jobs.case_folders import check_owner, claim, held_files
from bertbench.jobs.prune_importance import PARTIAL
from bertbench.jobs.run_listing import case_estimates, finished_before, print_cases, print_dry_run, print_plan
from bertbench.jobs.run_progress import RunProgress
from bertbench.launcher import CaseProcesses
from bertbench.lifetime import TETHER_ENV
from bertbench.locking import exclusive
from bertbench.progress import CHANNEL_ENV
from bertbench.results.record import RUN_UID_ENV, RunRecord
from bertbench.results.store import ResultsStore
from bertbench.results.tracking import PARENT_ENV, URI_ENV
from bertbench.workloads import Case, Workload, load_workload
from bertbench.workloads.estimate import duration_text
from bertbench.workloads.plan import LOCK_FILE, PlannedCase, node_command_lines, plan_cases, runs_here, select_cases


class CasesFailed(BertbenchError):
    """Some cases failed (exit 1; the line says how many and which)."""

    def __init__(self, failed: list[str], records: list[RunRecord]) -> None:
        super().__init__(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        self.records = records


def _resume_flag(planned: PlannedCase, redo: bool) -> list[str]:
    """A case that ran before without finishing (in its own folder: see case_folders): training continues from
    its checkpoints, a prune from its partial importance, the rest starts over (and so does whatever --force
    redoes)."""
    directory = planned.directory
    if not held_files(directory):
        return []
    job = planned.case.job
    training = job in ("finetune", "pretrain") and any((directory / "checkpoints").glob("step-*"))
    pruning = job == "prune" and (directory / PARTIAL).is_file()
    return ["--resume"] if (training or pruning) and not redo else ["--overwrite"]


def _free_port() -> int:
    """A TCP port free on loopback now, for the rendezvous of a case whose nodes all run here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _case_environment(uid: str, multinode: bool, progress: RunProgress, tracking: str | None) -> dict[str, str]:
    """The environment of a case's processes: its store row, tethered to `run`, nested under the workload's row on
    a tracking server (RUN_UID_ENV names that row until here), the progress channel."""
    env = {**os.environ, RUN_UID_ENV: uid, TETHER_ENV: "1", PARENT_ENV: os.environ.get(RUN_UID_ENV, "")}
    if tracking:
        env[URI_ENV] = tracking
    if not multinode:  # --standalone: loopback; across nodes gloo's interface follows the rendezvous address
        env.update({"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"})
    env[CHANNEL_ENV] = str(progress.progress.path.resolve()) if progress.progress else ""
    return env


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
    env = _case_environment(uid, multinode, progress, tracking)
    claim(planned.directory, workload.name, case.name, planned.fingerprint)
    log.parent.mkdir(parents=True, exist_ok=True)
    if progress.progress:
        progress.progress.path.write_text("")
    with open(log, "w", encoding="utf-8") as handle:
        handle.write("".join("$ " + shlex.join(argv) + "\n" for argv in lines))
        handle.flush()
        processes = CaseProcesses(lines, handle, env)
        try:
            code = processes.wait(progress.tick)
        except BaseException:
            # Ctrl-C or SIGTERM: stop the case (its own handler saves nothing half-written), then stop.
            processes.stop()
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
        print_cases(workload, cases)
        return None
    planned = plan_cases(workload, config, cases)
    if config.dry_run:
        print_dry_run(config, workload, planned, matched)
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
    estimates = case_estimates(workload, planned, store, config, matched)
    print_plan(workload, planned, estimates)
    order = [item.case.name for item in planned]
    with RunProgress(workload.name, order, estimates, live=config.show_progress) as progress:
        for item in planned:
            name = item.case.name
            blocked = [n for n in item.case.needs if outcome.get(n) == "failed"]
            forced = config.force and name in matched  # --force redoes the selected cases, not what they need
            if blocked:
                outcome[name] = "failed"
                warn(f"{name}: not run, it needs {', '.join(blocked)}, which failed")
            elif not forced and finished_before(store, workload, item):
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
