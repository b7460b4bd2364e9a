"""`bertbench export mlperf`: MLPerf Inference's submission tree, in the layout of the checker version that matches
the installed LoadGen (v6.1), from the runs in the store: LoadGen's logs untouched, accuracy.txt as MLPerf's scorer
prints it, each test's user.conf, measurements.json, the TEST01 tree of a passed compliance test, one system
description per machine, the source folder, and the accuracy logs truncated as MLCommons' truncate_accuracy_log.py
does. Only VALID, quiet performance runs with an accuracy run of the same experiment go in; every run left out is
said with its reason.

    OUTPUT/DIVISION/SUBMITTER/src/                      README.md (how the results were made), the export's mark
    OUTPUT/DIVISION/SUBMITTER/systems/SYSTEM.json
    OUTPUT/DIVISION/SUBMITTER/results/SYSTEM/BENCHMARK/SCENARIO/
        measurements.json  user.conf  README.md
        accuracy/          mlperf_log_{summary,detail}.txt  mlperf_log_accuracy.json  accuracy.txt
        performance/run_1/ mlperf_log_{summary,detail}.txt
        TEST01/            verify_{accuracy,performance}.txt  accuracy/  performance/run_1/
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bertbench.bench.compliance import verify_accuracy
from bertbench.bench.loadgen_logs import ACCURACY, DETAIL, SUMMARY, TEST_USER_CONF
from bertbench.configs import ExportConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.io_utils import atomic_directory, atomic_write_json, atomic_write_text
from bertbench.names import name_problem
from bertbench.results.fleet import machine
from bertbench.results.mlperf_layout import (
    CHECKER_VERSION,
    ONLY_THE_USER_KNOWS,
    SYSTEM_FIELDS,
    Entry,
    accuracy_text,
    choose,
    measurements,
    passed_test01,
    system_description,
    user_conf,
)
from bertbench.results.mlperf_truncation import truncate_accuracy_folder
from bertbench.results.selection import select
from bertbench.results.store import ResultsStore

EXPORT_MARK = ".bertbench-export.json"  # in DIVISION/SUBMITTER/src/: an export of ours, which --overwrite may replace


def _run_folder(run: dict[str, Any], store: Path) -> Path:
    """A run's output folder: absolute as stores keep it now; an older store's relative path is tried as given and
    against the store's own folder."""
    base = Path(str(run.get("output_dir") or ""))
    if base.is_absolute() or base.exists():
        return base
    return store.parent / base


def _test_folder(run: dict[str, Any], store: Path) -> Path:
    """Where one test of a run lies: DIR, or DIR/bsN for one batch size of a sweep."""
    base = _run_folder(run, store)
    sweep = base / f"bs{run.get('batch_size')}"
    return sweep if (sweep / "loadgen" / SUMMARY).is_file() else base


def _loadgen_dir(run: dict[str, Any], store: Path) -> Path:
    """Where a run's LoadGen logs are."""
    folder = _test_folder(run, store) / "loadgen"
    if not (folder / SUMMARY).is_file():
        raise BertbenchError(f"{folder}: LoadGen's logs of run {str(run.get('uid'))[:8]} are gone")
    return folder


def _copy(source: Path, target: Path, names: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / name, target / name)  # untouched: MLPerf's checker reads LoadGen's own bytes


def _write_entry(scenario_dir: Path, system: str, entry: Entry, store: Path) -> None:
    """One scenario of one benchmark: logs, accuracy.txt, settings, measurements, README and TEST01."""
    perf, acc = entry.performance, entry.accuracy
    performance = _loadgen_dir(perf, store)
    _copy(performance, scenario_dir / "performance" / "run_1", (SUMMARY, DETAIL))
    _copy(_loadgen_dir(acc, store), scenario_dir / "accuracy", (SUMMARY, DETAIL, ACCURACY))
    atomic_write_text(scenario_dir / "accuracy" / "accuracy.txt", accuracy_text(acc))
    if (performance / TEST_USER_CONF).is_file():  # the test's settings as the user.conf LoadGen read
        shutil.copy2(performance / TEST_USER_CONF, scenario_dir / "user.conf")
    else:  # a run from before bertbench kept it: the settings LoadGen logged
        atomic_write_text(scenario_dir / "user.conf", user_conf(perf))
    atomic_write_json(scenario_dir / "measurements.json", measurements(perf))
    atomic_write_text(scenario_dir / "README.md", _readme(entry, system))
    if passed_test01(perf):
        tree = _test_folder(perf, store) / "compliance" / "TEST01"
        # TEST01 was verified against the bench run's own accuracy pass; a reviewer verifies it against the accuracy
        # run exported here: it goes in when that verdict is a pass too
        verdict = verify_accuracy(
            scenario_dir / "accuracy" / ACCURACY, tree / "accuracy" / ACCURACY, lambda data: {}, with_responses=False
        )
        if not verdict.passed:
            warn(f"{tree}: TEST01 left out: against the exported accuracy run it gives {verdict.lines[-2:]}")
            return
        target = scenario_dir / "TEST01"
        shutil.copytree(tree, target)
        atomic_write_text(target / "accuracy" / "accuracy.txt", "")  # run_verification.py writes none; hashed below


def _readme(entry: Entry, system: str) -> str:
    perf = entry.performance
    command = (
        f"bertbench bench squad --model {perf.get('model')} --data {perf.get('data')} --backend {perf.get('backend')} "
        f"--precision {perf.get('precision')} --scenario {perf.get('scenario')} --batch-size {perf.get('batch_size')} "
        f"--instances {perf.get('instances')} --cores-per-instance {perf.get('cores_per_instance')}"
    )
    lines = [
        f"# {entry.benchmark} {entry.scenario} on {system}",
        "",
        f"Measured with bertbench (git {perf.get('git_sha')}), LoadGen {perf.get('mlcommons_loadgen_version')}:",
        "",
        f"    {command} --mode performance" + (" --compliance TEST01" if perf.get("compliance_test") else ""),
        f"    {command} --mode accuracy",
        "",
        "user.conf holds the test's settings as LoadGen read them (after its built-in mlperf.conf).",
    ]
    return "\n".join(lines) + "\n"


def _source_readme(entries: list[Entry]) -> str:
    first = entries[0].performance
    return (
        "# bertbench\n\n"
        f"These results were made with bertbench {first.get('bertbench_version')} (git {first.get('git_sha')}), "
        "one Python package and CLI for BERT workloads: `pip install -e .` in its checkout, then the commands in "
        f"each scenario's README.md.\n\nCheck this tree with MLCommons' submission checker, version "
        f"{CHECKER_VERSION} (the one whose seeds the installed LoadGen uses).\n"
    )


def _systems(config: ExportConfig, entries: list[Entry]) -> dict[str, list[Entry]]:
    """The entries of each machine under its system name (a merged fleet store holds several machines); --system
    names the one machine when the runs come from one."""
    by_host: dict[str, list[Entry]] = {}
    for entry in entries:
        by_host.setdefault(machine(entry.performance), []).append(entry)
    if config.system is not None:
        if len(by_host) > 1:
            raise UsageError(
                f"--system {config.system}: the runs come from {len(by_host)} machines ({', '.join(by_host)}); "
                "leave --system out (each machine is its own system) or choose one with --where hostname=HOST"
            )
        return {config.system: entries}
    systems: dict[str, list[Entry]] = {}
    for host, found in by_host.items():
        name = f"{host}_bertbench"
        if name_problem(name):  # a hostname is the machine's word, not ours: made an identifier
            name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "system_bertbench"
        systems[name] = found
    return systems


def _system_facts(path: Path | None) -> dict[str, Any]:
    """--system-facts FILE: a JSON object of system-description fields the machine cannot tell (or corrections)."""
    if path is None:
        return {}
    try:
        facts = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BertbenchError(f"{path}: cannot read the system facts ({exc})") from None
    if not isinstance(facts, dict):
        raise BertbenchError(f"{path}: the system facts must be a JSON object of field: value")
    unknown = sorted(set(facts) - set(SYSTEM_FIELDS))
    if unknown:
        raise BertbenchError(f"{path}: {', '.join(unknown)} is no field of MLPerf's system description")
    return facts


def _marked(path: Path) -> bool:
    return any(path.glob(f"*/*/src/{EXPORT_MARK}"))


def _prepare_output(path: Path, overwrite: bool) -> None:
    occupied = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if occupied and not (overwrite and _marked(path)):
        raise BertbenchError(
            f"{path}: exists and is not empty (choose a new folder; --overwrite replaces an earlier export)"
        )


def run_export(config: ExportConfig) -> None:
    """Write the submission tree of the selected runs: one system per machine, each with its own description."""
    facts = _system_facts(config.system_facts)
    _prepare_output(config.output, config.overwrite)
    store = ResultsStore(config.store, read_only=True)
    where = list(config.where) + ([f"workload={config.workload}"] if config.workload else [])
    runs = select(store.runs(), where, None, ("finished",))
    entries, refused = choose(runs, config.division)
    for reason in refused:
        warn(f"left out: {reason}")
    if not entries:
        raise BertbenchError(f"{store.path}: no run can be exported ({len(refused)} left out, see above)")
    systems = _systems(config, entries)
    missing: dict[str, list[str]] = {}
    with atomic_directory(config.output) as tmp:
        root = tmp / config.division / config.submitter
        for system, found in systems.items():
            description, missing[system] = system_description(
                found[0].performance, config.division, config.submitter, system, facts
            )
            atomic_write_json(root / "systems" / f"{system}.json", description)
            for entry in found:
                where = root / "results" / system / entry.benchmark / entry.scenario
                _write_entry(where, system, entry, store.path)
                for folder in (where / "accuracy", where / "TEST01" / "accuracy"):
                    if folder.is_dir():  # the whole logs stay in the runs' own folders
                        truncate_accuracy_folder(folder)
        atomic_write_text(root / "src" / "README.md", _source_readme(entries))
        mark = {
            "checker_version": CHECKER_VERSION,
            "entries": len(entries),
            "systems": list(systems),
            "left_out": refused,
            "system_fields_missing": missing,
        }
        atomic_write_json(root / "src" / EXPORT_MARK, mark)
    names = ", ".join(systems)
    info(f"wrote {config.output}: {len(entries)} result(s) of {names}, {len(refused)} run(s) left out")
    info(f"check it with MLCommons' submission checker --version {CHECKER_VERSION}")
    for system, fields in missing.items():
        if fields:
            known = [f for f in fields if f in ONLY_THE_USER_KNOWS]
            hint = f" (no machine can tell {', '.join(known)})" if known else ""
            warn(
                f"the description of {system} leaves {', '.join(fields)} empty{hint}: the checker refuses that; "
                "give them with --system-facts FILE (a JSON object)"
            )
