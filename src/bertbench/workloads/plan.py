"""From a validated workload to runnable cases: the data directory, placeholders filled, each case's options built
into its job's config (checked by the same parsers as the command line), its command line, directory and
fingerprint (what a finished result depends on)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.cliargs import OptionValueError
from bertbench.commands import command_argv, config_from_options
from bertbench.configs import RunConfig
from bertbench.errors import UsageError
from bertbench.hardware import available_cores
from bertbench.io_utils import sha256_file
from bertbench.launcher import RENDEZVOUS_PORT, python_command, torchrun_command
from bertbench.lifetime import hostname
from bertbench.names import inside
from bertbench.results.environment import git_sha
from bertbench.results.store import default_store_path
from bertbench.workloads.schema import LOCAL_HOST, PLACEHOLDER, Case, Workload, WorkloadError, fingerprint

DATA_CANDIDATES = ("data", "../shared/data", "shared/data")
REPO_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"  # a development checkout's neighbour
LOCK_FILE = ".lock"  # in OUTPUT_ROOT/WORKLOAD: held by the one `run` of that workload
LOGS = "logs"  # OUTPUT_ROOT/WORKLOAD/logs/CASE.log
# Options `run` sets itself for every case: a workload that sets them is refused.
RUN_OWNED = ("output_dir", "store", "no_progress", "overwrite", "resume")
# Options naming a path a case writes: it must lie in the case's own folder.
WRITTEN_PATHS = ("output", "export_dir")


@dataclass
class PlannedCase:
    """A case with its directory, config, command line and fingerprint."""

    case: Case
    directory: Path
    config: Any  # the job's config dataclass
    argv: list[str]  # bertbench arguments (no interpreter)
    fingerprint: str


def _is_data_dir(path: Path) -> bool:
    return (path / "squad").is_dir() or (path / "sst2").is_dir()


def resolve_data_dir(explicit: Path | None) -> Path | None:
    """--data-dir, $BERTBENCH_DATA_DIR, ./data, ../shared/data, ./shared/data, or the checkout's neighbour."""
    if explicit is not None:
        if not explicit.is_dir():
            raise UsageError(f"--data-dir {explicit}: not a directory")
        if not _is_data_dir(explicit):
            raise UsageError(f"--data-dir {explicit}: holds neither squad/ nor sst2/")
        return explicit.resolve()
    env = os.environ.get("BERTBENCH_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(c) for c in DATA_CANDIDATES] + [REPO_DATA]
    for candidate in candidates:
        if _is_data_dir(candidate):
            return candidate.resolve()
    return None


def fill_placeholders(value: Any, data_dir: Path | None, output_dir: Path, case_dirs: dict[str, Path]) -> Any:
    """{data}, {output} and {case:NAME} in an option value -> paths."""
    if isinstance(value, list):
        return [fill_placeholders(v, data_dir, output_dir, case_dirs) for v in value]
    if not isinstance(value, str):
        return value

    def fill(match: re.Match) -> str:
        key, arg = match.groups()
        if key == "data":
            if data_dir is None:
                raise WorkloadError("this workload reads data: pass --data-dir DIR (with squad/ and sst2/)")
            return str(data_dir)
        if key == "output":
            return str(output_dir)
        return str(case_dirs[arg])

    return PLACEHOLDER.sub(fill, value)


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


def _check_paths(case: Case, options: dict[str, Any], directory: Path, data_dir: Path | None, source: Path) -> None:
    """The data files a case reads exist; the paths it writes lie in its own folder."""
    for key, value in case.options.items():
        for raw, filled in zip(*(v if isinstance(v, list) else [v] for v in (value, options[key])), strict=True):
            if isinstance(raw, str) and raw.startswith("{data}") and not Path(str(filled)).exists():
                raise WorkloadError(f"{source}: case {case.name}: option '{key}': {filled} does not exist (--data-dir)")
    for key in WRITTEN_PATHS:
        if options.get(key) is None:
            continue
        try:
            inside(directory, Path(str(options[key])))
        except ValueError:
            raise WorkloadError(
                f"{source}: case {case.name}: option '{key}': {options[key]} is outside the case's folder "
                f"{directory} (write to {{output}}/…)"
            ) from None


def case_config(case: Case, options: dict[str, Any], run_options: dict[str, Any], source: Path) -> Any:
    """The job's config for a case: its options (placeholders filled) plus what `run` sets, checked as the command
    line checks them; one WorkloadError line naming the file, the case and the option otherwise."""
    for key in options:
        if str(key).replace("-", "_") in RUN_OWNED:
            raise WorkloadError(f"{source}: case {case.name}: option '{key}' is set by `bertbench run` itself")
    try:
        return config_from_options(
            case.job, case.task, {**options, **run_options}, ignorable=frozenset(case.from_defaults)
        )
    except OptionValueError as exc:
        raise WorkloadError(f"{source}: case {case.name}: {exc}") from None


def _run_options(job: str, directory: Path, store: Path, cache_dir: Path | None) -> dict[str, Any]:
    """What `run` passes to every case (a job that has no such option is given none)."""
    if job == "build-corpus":
        return {"store": str(store)}
    extra: dict[str, Any] = {"store": str(store), "output_dir": str(directory), "no_progress": True}
    if cache_dir is not None:
        extra["cache_dir"] = str(cache_dir)
    return extra


def _data_files(options: dict[str, Any], data_dir: Path | None) -> dict[str, str]:
    """The files a case reads, by their workload spelling ({data}/…), with their SHA-256."""
    files = {}
    for value in options.values():
        for item in value if isinstance(value, list) else [value]:
            path = Path(str(item))
            if isinstance(item, str) and path.is_file():
                files[str(item).replace(str(data_dir), "{data}") if data_dir else str(item)] = sha256_file(path)
    return files


def plan_cases(workload: Workload, config: RunConfig, cases: list[Case]) -> list[PlannedCase]:
    """Directories, configs, command lines and fingerprints, in order."""
    uses_data = any("{data}" in str(v) for c in cases for v in c.options.values())
    data_dir = resolve_data_dir(config.data_dir)
    if uses_data and data_dir is None:
        raise UsageError(
            f"{workload.path}: the workload reads data: pass --data-dir DIR (holding squad/ and sst2/) or set "
            "BERTBENCH_DATA_DIR"
        )
    root = (config.output_root / workload.name).resolve()
    store_path = config.store or default_store_path()
    directories = {c.name: inside(root, root / c.name) for c in cases}  # names are identifiers: never outside
    cores = available_cores()
    for case in cases:
        here = case.processes * (len(case.nodes) if runs_here(case) else 1)  # every node of a local case is here
        if here > cores and not config.oversubscribe:
            raise WorkloadError(
                f"{workload.path}: case {case.name}: {here} processes is more than the {cores} cores this "
                "machine has (pass --oversubscribe to run it anyway)"
            )
    fingerprints: dict[str, str] = {}
    planned = []
    for case in cases:
        directory = directories[case.name]
        options = {k: fill_placeholders(v, data_dir, directory, directories) for k, v in case.options.items()}
        _check_paths(case, options, directory, data_dir, workload.path)
        job_config = case_config(
            case, options, _run_options(case.job, directory, store_path, config.cache_dir), workload.path
        )
        fingerprints[case.name] = fingerprint(
            {
                "job": case.job,
                "task": case.task,
                "options": case.options,  # before placeholders: paths of other cases enter as their fingerprints
                "processes": case.processes,
                **({"nodes": case.nodes} if len(case.nodes) > 1 else {}),  # one node: fingerprints as before
                "data": _data_files(options, data_dir),
                "needs": [fingerprints[n] for n in case.needs],
                "code": git_sha(),
            }
        )
        argv = command_argv(case.job, case.task, job_config)
        planned.append(PlannedCase(case, directory, job_config, argv, fingerprints[case.name]))
    return planned


def runs_here(case: Case) -> bool:
    """Every node of the case is this host (`nodes: N`, or hosts that all name this machine)."""
    here = {LOCAL_HOST, "localhost", "::1", hostname(), socket.getfqdn()}
    return all(host in here for host in case.nodes)


def node_command_lines(
    planned: PlannedCase, extra: list[str] | None = None, tethered: bool = False, port: int = RENDEZVOUS_PORT
) -> list[list[str]]:
    """One command line per node: torchrun's c10d rendezvous at the first host, `--nnodes N --node-rank R`, each
    node starting `processes` workers. A one-node case is its one command line."""
    nodes = planned.case.nodes
    if len(nodes) == 1:
        return [command_line(planned, extra, tethered)]
    args = [*planned.argv, *(extra or [])]
    endpoint = f"{nodes[0]}:{port}"
    return [
        torchrun_command(
            args,
            planned.case.processes,
            nodes=len(nodes),
            node_rank=rank,
            endpoint=endpoint,
            run_id=planned.case.name,
            tethered=tethered,
        )
        for rank in range(len(nodes))
    ]


def command_line(planned: PlannedCase, extra: list[str] | None = None, tethered: bool = False) -> list[str]:
    """The process a case runs in: `python -m bertbench …`, or torchrun for several processes; `tethered` (how
    `run` starts it) makes it die with `run`, even when `run` is killed (bertbench.lifetime)."""
    args = [*planned.argv, *(extra or [])]
    if planned.case.processes > 1:
        return torchrun_command(args, planned.case.processes, tethered=tethered)
    return python_command("bertbench", args, tethered)
