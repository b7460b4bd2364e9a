"""`bertbench run`: a workload's cases, in order, each in its own process (a crash or an OOM in one is recorded as
failed and the run goes on). A case that finished before with the same config, code version and data is skipped,
so an interrupted run resumes; the end is the KPI table and an HTML report."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError, UsageError
from bertbench.io_utils import sha256_file
from bertbench.jobs.configs import RunConfig
from bertbench.progress import progress_bar
from bertbench.results.console import info, print_rows_table, stdout_console, warn
from bertbench.results.environment import git_sha
from bertbench.results.record import RunRecord
from bertbench.results.recording import RUN_UID_ENV
from bertbench.results.store import ResultsStore, default_store_path
from bertbench.workloads import Case, Workload, WorkloadError, fill_placeholders, fingerprint, load_workload

DATA_CANDIDATES = ("data", "../shared/data", "shared/data")
REPO_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"  # a development checkout's neighbour


class CasesFailed(BertbenchError):
    """Some cases failed: the exit code is how many (at most 100)."""

    def __init__(self, failed: list[str], records: list[RunRecord]) -> None:
        super().__init__(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        self.exit_code = min(len(failed), 100)
        self.records = records


@dataclass
class PlannedCase:
    """A case with its directory, command line and fingerprint."""

    case: Case
    directory: Path
    argv: list[str]  # bertbench arguments (no interpreter)
    fingerprint: str


def resolve_data_dir(explicit: Path | None) -> Path | None:
    """--data-dir, $BERTBENCH_DATA_DIR, ./data, ../shared/data, ./shared/data, or the checkout's neighbour."""
    if explicit is not None:
        if not explicit.is_dir():
            raise UsageError(f"--data-dir {explicit}: not a directory")
        return explicit.resolve()
    env = os.environ.get("BERTBENCH_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(c) for c in DATA_CANDIDATES] + [REPO_DATA]
    for candidate in candidates:
        if (candidate / "squad").is_dir() or (candidate / "sst2").is_dir():
            return candidate.resolve()
    return None


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def case_arguments(case: Case, options: dict[str, Any], parser: argparse.ArgumentParser, source: Path) -> list[str]:
    """Options -> the command line of the case's job, each option checked against that job's parser."""
    command = _subparser(parser, case.job, *([case.task] if case.task else []))
    flags = command._option_string_actions
    argv = [case.job, *([case.task] if case.task else [])]
    command_name = " ".join(argv)
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if key in case.from_defaults and flag not in flags:
            continue  # a workload default applies to the jobs that take it
        if key.startswith("-") or flag not in flags:
            raise WorkloadError(
                f"{source}: case {case.name}: option '{key}' is not an option of `bertbench {command_name}`"
            )
        action = flags[flag]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise WorkloadError(f"{source}: case {case.name}: option '{key}' is a switch: true or false")
            argv += [flag] if value else []
        elif isinstance(action, argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise WorkloadError(f"{source}: case {case.name}: option '{key}' is a switch: true or false")
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            if action.nargs not in ("+", "*") and not isinstance(action, argparse._AppendAction):
                raise WorkloadError(f"{source}: case {case.name}: option '{key}' takes one value, not a list")
            if isinstance(action, argparse._AppendAction):
                for item in value:
                    argv += [flag, str(item)]
            else:
                argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def plan_cases(workload: Workload, config: RunConfig, cases: list[Case]) -> list[PlannedCase]:
    """Directories, checked command lines and fingerprints, in order."""
    from bertbench.cli import build_parser, parse

    parser = build_parser()
    uses_data = any("{data}" in str(v) for c in cases for v in c.options.values())
    data_dir = resolve_data_dir(config.data_dir)
    if uses_data and data_dir is None:
        raise UsageError(
            f"{workload.path}: the workload reads data: pass --data-dir DIR (holding squad/ and sst2/) or set "
            "BERTBENCH_DATA_DIR"
        )
    root = (config.output_root / workload.name).resolve()
    store_path = config.store or default_store_path()
    directories = {c.name: root / c.name for c in cases}
    fingerprints: dict[str, str] = {}
    planned = []
    for case in cases:
        directory = directories[case.name]
        options = {k: fill_placeholders(v, data_dir, directory, directories) for k, v in case.options.items()}
        argv = case_arguments(case, options, parser, workload.path)
        extra = ["--store", str(store_path)]
        if case.job != "build-corpus":
            extra += ["--output-dir", str(directory), "--no-progress"]
            if config.cache_dir is not None:
                extra += ["--cache-dir", str(config.cache_dir)]
        argv += extra
        try:
            parse(argv)
        except UsageError as exc:
            raise WorkloadError(f"{workload.path}: case {case.name}: {exc}") from None
        files = {}
        for value in options.values():
            for item in value if isinstance(value, list) else [value]:
                path = Path(str(item))
                if isinstance(item, str) and path.is_file():
                    files[str(item).replace(str(data_dir), "{data}") if data_dir else str(item)] = sha256_file(path)
        fingerprints[case.name] = fingerprint(
            {
                "job": case.job,
                "task": case.task,
                "options": case.options,  # before placeholders: paths of other cases enter as their fingerprints
                "processes": case.processes,
                "data": files,
                "needs": [fingerprints[n] for n in case.needs],
                "code": git_sha(),
            }
        )
        planned.append(PlannedCase(case, directory, argv, fingerprints[case.name]))
    return planned


def select_cases(workload: Workload, pattern: str | None) -> tuple[list[Case], set[str]]:
    """(cases whose name matches `pattern` with everything they need, the names that matched)."""
    if pattern is None:
        return workload.cases, {c.name for c in workload.cases}
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"-k {pattern}: not a regular expression ({exc})") from None
    chosen = {c.name for c in workload.cases if regex.search(c.name)}
    if not chosen:
        raise UsageError(f"-k {pattern}: no case of {workload.name} matches")
    matched = set(chosen)
    by_name = {c.name: c for c in workload.cases}
    stack = list(chosen)
    while stack:
        for need in by_name[stack.pop()].needs:
            if need not in chosen:
                chosen.add(need)
                stack.append(need)
    return [c for c in workload.cases if c.name in chosen], matched


def command_line(planned: PlannedCase) -> list[str]:
    """The process a case runs in: `python -m bertbench …`, or torchrun for several processes."""
    if planned.case.processes > 1:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(planned.case.processes),
            "-m",
            "bertbench",
            *planned.argv,
        ]
    return [sys.executable, "-m", "bertbench", *planned.argv]


def _resume_flag(planned: PlannedCase, redo: bool) -> list[str]:
    """A case that ran before without finishing: training continues from its checkpoints, the rest starts over
    (and so does everything that --force redoes)."""
    directory = planned.directory
    if planned.case.job == "build-corpus" or not directory.exists() or not any(directory.iterdir()):
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
    argv = command_line(planned) + _resume_flag(planned, redo)
    env = {**os.environ, RUN_UID_ENV: uid, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    if case.job == "build-corpus":
        planned.directory.mkdir(parents=True, exist_ok=True)
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
    store = ResultsStore(config.store)
    logs = config.output_root / workload.name / "logs"
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

    html_path = config.output_root / workload.name / "report.html"
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
