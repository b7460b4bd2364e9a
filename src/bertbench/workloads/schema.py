"""The workload file: YAML naming test cases (bertbench jobs with their options) and matrices that expand them.

A workload is validated before anything runs: an unknown key, a wrong type, an empty matrix, a job or task the
command table does not have, a need that names no case → one line naming the file, the key and the problem
(exit 2). Options are checked against the jobs' own config classes when the cases are planned (`plan`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bertbench.commands import COMMANDS, WORKLOAD_JOBS
from bertbench.errors import UsageError
from bertbench.names import name_problem, normalised

TOP_KEYS = {"name": str, "description": str, "reproduces": list, "defaults": dict, "cases": list}
CASE_KEYS = {
    "name": str,
    "job": str,
    "task": str,
    "description": str,
    "options": dict,
    "matrix": dict,
    "needs": list,
    "processes": int,
    "nodes": (int, list),  # N nodes on this host, or the hosts (the first holds torchrun's rendezvous)
}
REQUIRED_TOP = ("name", "description", "cases")
REQUIRED_CASE = ("name", "job")
REFERENCE_KEYS = {"title": str, "source": str, "url": str, "note": str}
# Short forms of matrix values in case names, as the CPU workload pages spell them (bs32, ci1, …).
AXIS_TOKENS = {"batch_size": "bs{}", "cores_per_instance": "ci{}", "instances": "in{}", "threads": "t{}"}
PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9_.-]+))?\}")
LOCAL_HOST = "127.0.0.1"  # `nodes: N` means N torchrun nodes on this host, meeting on loopback
LOOPBACK = frozenset({LOCAL_HOST, "localhost", "::1", "[::1]"})
MAX_PROCESSES = 1024  # per node: far above any machine's cores, far below what would exhaust the process table
MAX_NODES = 64
MAX_CASES = 10_000  # per workload, after expansion: a bigger matrix is a mistake, refused before it is expanded


class WorkloadError(UsageError):
    """A workload file that cannot run (exit 2, one line naming the file and the key)."""


@dataclass
class Case:
    """One expanded test case: a bertbench job with concrete options."""

    name: str
    job: str
    task: str | None
    options: dict[str, Any]
    needs: list[str]
    processes: int = 1
    nodes: list[str] = field(default_factory=lambda: [LOCAL_HOST])  # one entry per torchrun node
    description: str = ""
    base: str = ""  # the case entry it was expanded from
    matrix_values: dict[str, Any] = field(default_factory=dict)
    from_defaults: set[str] = field(default_factory=set)  # options only the workload's defaults set


@dataclass
class Workload:
    """A validated workload with its expanded cases, in file order."""

    name: str
    description: str
    path: Path
    reproduces: list[dict[str, str]]
    cases: list[Case]


def builtin_names() -> list[str]:
    """Workloads shipped in the package."""
    folder = resources.files("bertbench.workloads")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_workload_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a built-in workload."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise WorkloadError(f"{path}: workload file not found")
        return path
    if name_or_path in builtin_names():
        return Path(str(resources.files("bertbench.workloads") / f"{name_or_path}.yaml"))
    raise WorkloadError(
        f"workload {name_or_path}: not a file and not a built-in workload ({', '.join(builtin_names())})"
    )


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", dict: "a mapping"}
    return " or ".join(names[k] for k in kind) if isinstance(kind, tuple) else names[kind]


def _check_keys(where: str, data: Any, allowed: dict[str, Any], required: tuple[str, ...], source: Path) -> None:
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: {where} must be a mapping, not {type(data).__name__}")
    for key, value in data.items():
        if key not in allowed:
            raise WorkloadError(f"{source}: {where}.{key}: unknown key (allowed: {', '.join(allowed)})")
        kind = allowed[key]
        integer = int in kind if isinstance(kind, tuple) else kind is int
        if not isinstance(value, kind) or (integer and isinstance(value, bool)):
            raise WorkloadError(f"{source}: {where}.{key}: must be {_type_name(kind)}, not {type(value).__name__}")
    for key in required:
        if key not in data:
            raise WorkloadError(f"{source}: {where}: missing required key '{key}'")


def _check_value(where: str, value: Any, source: Path) -> None:
    scalar = (str, int, float, bool)
    if isinstance(value, list):
        if not value or not all(isinstance(v, scalar) for v in value):
            raise WorkloadError(f"{source}: {where}: a list option needs one or more plain values")
    elif not isinstance(value, scalar):
        raise WorkloadError(f"{source}: {where}: must be a string, number, boolean or list of them")


def _short(value: Any) -> str:
    """A matrix value as a case-name token (bert-large -> bertlarge, 0.5 -> 0.5)."""
    return re.sub(r"[^A-Za-z0-9.]+", "", str(value)).lower()


def _case_name(template: str, options: dict[str, Any], matrix: dict[str, Any], source: Path, where: str) -> str:
    used = set()

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if match.group(2) is not None or key not in options:
            raise WorkloadError(f"{source}: {where}.name: placeholder {{{key}}} is not an option of this case")
        used.add(key)
        return _short(options[key])

    name = PLACEHOLDER.sub(fill, template)
    for axis, value in matrix.items():
        if axis not in used:
            name += "-" + AXIS_TOKENS.get(axis, "{}").format(_short(value))
    return name


HOST_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:]+\]?$")


def _nodes(value: int | list[Any], where: str, source: Path) -> list[str]:
    """`nodes: N` (N nodes on this host) or `nodes: [HOST, …]` (the first holds the rendezvous) as host names."""
    if isinstance(value, int):
        if not 1 <= value <= MAX_NODES:
            raise WorkloadError(f"{source}: {where}: must be between 1 and {MAX_NODES}")
        return [LOCAL_HOST] * value
    if not 1 <= len(value) <= MAX_NODES:
        raise WorkloadError(f"{source}: {where}: give between 1 and {MAX_NODES} hosts")
    for host in value:
        if not isinstance(host, str) or not HOST_PATTERN.match(host):
            raise WorkloadError(f"{source}: {where}: {host!r} is not a host name or address")
    remote = [host for host in value[1:] if host not in LOOPBACK]
    if value[0] in LOOPBACK and remote:
        # every node dials the first host: a loopback address reaches the other machine's own loopback
        raise WorkloadError(
            f"{source}: {where}: the rendezvous host {value[0]} is loopback, which {remote[0]} cannot reach; name "
            "the first node by an address the others can reach"
        )
    return list(value)


def load_workload(name_or_path: str) -> Workload:
    """Read, validate and expand a workload (options are checked against the jobs' configs by `plan`)."""
    path = resolve_workload_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkloadError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise WorkloadError(f"{path}: malformed YAML{at} ({getattr(exc, 'problem', exc)})") from None
    _check_keys("workload", data, TOP_KEYS, REQUIRED_TOP, path)
    problem = name_problem(data["name"])
    if problem:
        raise WorkloadError(f"{path}: workload.name {data['name']!r}: {problem}")
    if not data["cases"]:
        raise WorkloadError(f"{path}: cases: the list is empty")
    defaults = data.get("defaults", {})
    for key, value in defaults.items():
        _check_value(f"defaults.{key}", value, path)
    for i, reference in enumerate(data.get("reproduces", [])):
        _check_keys(f"reproduces[{i}]", reference, REFERENCE_KEYS, ("title", "source"), path)
    cases: list[Case] = []
    bases: dict[str, list[str]] = {}
    planned = 0
    for i, entry in enumerate(data["cases"]):
        where = f"cases[{i}]"
        _check_keys(where, entry, CASE_KEYS, REQUIRED_CASE, path)
        job, task = entry["job"], entry.get("task")
        if job not in WORKLOAD_JOBS:
            raise WorkloadError(f"{path}: {where}.job: unknown job '{job}' (choose from {', '.join(WORKLOAD_JOBS)})")
        tasks = COMMANDS[job].tasks
        if bool(tasks) != (task is not None):
            need = "needs a task" if tasks else "takes no task"
            raise WorkloadError(f"{path}: {where}.task: job '{job}' {need}")
        if tasks and task not in tasks:
            choices = ", ".join(tasks)
            raise WorkloadError(f"{path}: {where}.task: job '{job}' has no task '{task}' (choose from {choices})")
        if not 1 <= entry.get("processes", 1) <= MAX_PROCESSES:
            raise WorkloadError(f"{path}: {where}.processes: must be between 1 and {MAX_PROCESSES}")
        if entry.get("processes", 1) > 1 and not COMMANDS[job].distributed:
            runs = ", ".join(name for name, command in COMMANDS.items() if command.distributed)
            raise WorkloadError(f"{path}: {where}.processes: only {runs} run under torchrun")
        nodes = _nodes(entry.get("nodes", 1), f"{where}.nodes", path)
        if len(nodes) > 1 and not COMMANDS[job].distributed:
            runs = ", ".join(name for name, command in COMMANDS.items() if command.distributed)
            raise WorkloadError(f"{path}: {where}.nodes: only {runs} run across nodes")
        options = entry.get("options", {})
        for key, value in options.items():
            _check_value(f"{where}.options.{key}", value, path)
        matrix = entry.get("matrix", {})
        if "matrix" in entry and not matrix:
            raise WorkloadError(f"{path}: {where}.matrix: empty (give at least one axis with values)")
        for axis, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise WorkloadError(f"{path}: {where}.matrix.{axis}: must be a non-empty list of values")
            for value in values:
                _check_value(f"{where}.matrix.{axis}", value, path)
        needs = entry.get("needs", [])
        if not all(isinstance(n, str) for n in needs):
            raise WorkloadError(f"{path}: {where}.needs: must be a list of case names")
        planned += math.prod(len(values) for values in matrix.values())
        if planned > MAX_CASES:
            raise WorkloadError(f"{path}: {where}.matrix: the workload expands to more than {MAX_CASES} cases")
        expanded = []
        for combination in itertools.product(*matrix.values()) if matrix else [()]:
            values = dict(zip(matrix, combination, strict=True))
            merged = {**defaults, **options, **values}
            name = _case_name(entry["name"], merged, values, path, where)
            problem = name_problem(name)
            if problem:
                raise WorkloadError(f"{path}: {where}: case {name!r}: {problem}")
            expanded.append(
                Case(
                    name,
                    job,
                    task,
                    merged,
                    list(needs),
                    entry.get("processes", 1),
                    nodes,
                    entry.get("description", ""),
                    entry["name"],
                    values,
                    set(defaults) - set(options) - set(values),  # a default applies where the job takes it
                )
            )
        bases[entry["name"]] = [c.name for c in expanded]
        cases += expanded
    names = [c.name for c in cases]
    seen: dict[str, str] = {}
    for name in names:  # one pass over a dict: linear in the number of cases
        key = normalised(name)
        if key in seen:
            twin = seen[key]
            same = "occurs more than once" if twin == name else f"differs from {twin} only in letter case"
            raise WorkloadError(f"{path}: cases: the case name {name} {same} after expansion")
        seen[key] = name
    order = {name: i for i, name in enumerate(names)}
    for case in cases:
        resolved = []
        for need in case.needs:
            targets = bases.get(need) or ([need] if need in order else None)
            if targets is None:
                raise WorkloadError(f"{path}: case {case.name}: needs '{need}', which is no case of this workload")
            if any(order[t] >= order[case.name] for t in targets):
                raise WorkloadError(f"{path}: case {case.name}: needs '{need}', which comes later in the file")
            resolved += targets
        case.needs = resolved
        for value in case.options.values():
            for text in value if isinstance(value, list) else [value]:
                for match in PLACEHOLDER.finditer(str(text)):
                    key, arg = match.groups()
                    if key == "case" and arg not in case.needs:
                        raise WorkloadError(f"{path}: case {case.name}: uses {{case:{arg}}} without needs: [{arg}]")
                    if key not in ("case", "data", "output"):
                        raise WorkloadError(f"{path}: case {case.name}: unknown placeholder {{{key}}}")
    return Workload(str(data["name"]), data["description"], path, data.get("reproduces", []), cases)


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable hash of what a case's result depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
