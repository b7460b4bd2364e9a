"""`bertbench export mlperf`: MLPerf Inference's submission tree from the runs in the store — LoadGen's logs
untouched, the accuracy log with an accuracy.txt in the scorer's output format, the settings used, the system
description. Only VALID, quiet performance runs with an accuracy run of the same configuration go in; every run
left out is said with its reason."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from bertbench.bench.loadgen_logs import ACCURACY, DETAIL, SUMMARY
from bertbench.configs import ExportConfig
from bertbench.console import info, warn
from bertbench.errors import BertbenchError, UsageError
from bertbench.io_utils import atomic_directory, atomic_write_json, atomic_write_text
from bertbench.names import name_problem
from bertbench.results.fleet import machine
from bertbench.results.mlperf_layout import Entry, choose, system_description, user_conf
from bertbench.results.selection import select
from bertbench.results.store import ResultsStore

EXPORT_MARK = ".bertbench-export.json"  # in the output folder: an export of ours, which --overwrite may replace


def _run_folder(run: dict[str, Any], store: Path) -> Path:
    """A run's output folder: absolute as stores keep it now; an older store's relative path is tried as given and
    against the store's own folder."""
    base = Path(str(run.get("output_dir") or ""))
    if base.is_absolute() or base.exists():
        return base
    return store.parent / base


def _loadgen_dir(run: dict[str, Any], store: Path) -> Path:
    """Where a run's LoadGen logs are: DIR/loadgen, or DIR/bsN/loadgen for one batch of a sweep."""
    base = _run_folder(run, store)
    for folder in (base / "loadgen", base / f"bs{run.get('batch_size')}" / "loadgen"):
        if (folder / SUMMARY).is_file():
            return folder
    raise BertbenchError(f"{base}: LoadGen's logs of run {str(run.get('uid'))[:8]} are gone")


def _copy(source: Path, target: Path, names: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)  # untouched: MLPerf's checker reads LoadGen's own bytes


def _write_entry(root: Path, system: str, entry: Entry, store: Path) -> None:
    perf, acc = entry.performance, entry.accuracy
    where = Path(system) / entry.benchmark / entry.scenario
    _copy(_loadgen_dir(perf, store), root / "results" / where / "performance" / "run_1", (SUMMARY, DETAIL))
    accuracy = root / "results" / where / "accuracy"
    _copy(_loadgen_dir(acc, store), accuracy, (SUMMARY, DETAIL, ACCURACY))
    # accuracy.txt as the scorer prints it (evaluate_v1.1.py's JSON line): our scorer read the same logged bytes
    scores = {"exact_match": acc.get("exact_match"), "f1": acc.get("f1")}
    atomic_write_text(accuracy / "accuracy.txt", json.dumps(scores) + "\n")
    measurements = root / "measurements" / where
    measurements.mkdir(parents=True, exist_ok=True)
    atomic_write_text(measurements / "user.conf", user_conf(perf))
    if perf.get("mlperf_conf") and Path(str(perf["mlperf_conf"])).is_file():
        shutil.copy2(str(perf["mlperf_conf"]), measurements / "mlperf.conf")
    implementation = {
        "input_data_types": "int64",
        "retraining": "no",
        "starting_weights_filename": str(perf.get("model")),
        "weight_data_types": "int8" if perf.get("precision") == "int8" else str(perf.get("precision")),
        "weight_transformations": perf.get("quantization_format") or "none",
    }
    atomic_write_json(measurements / f"{system}_bertbench_{entry.scenario}.json", implementation)
    command = (
        f"bertbench bench squad --model {perf.get('model')} --backend {perf.get('backend')} "
        f"--precision {perf.get('precision')} --scenario {perf.get('scenario')} --batch-size {perf.get('batch_size')} "
        f"--instances {perf.get('instances')} --cores-per-instance {perf.get('cores_per_instance')}"
    )
    readme = (
        f"# {entry.benchmark} {entry.scenario} on {system}\n\nMeasured with bertbench (git {perf.get('git_sha')}):\n\n"
    )
    readme += f"    {command} --mode performance\n    {command} --mode accuracy\n"
    atomic_write_text(measurements / "README.md", readme)
    test = perf.get("compliance_test")
    if test:
        folder = _run_folder(perf, store)
        source = folder / "compliance" / test
        if not source.is_dir():
            source = folder / f"bs{perf.get('batch_size')}" / "compliance" / test
        target = root / "compliance" / where / test
        _copy(source, target, ("verify_accuracy.txt", "verify_performance.txt"))
        _copy(source / "performance", target / "performance" / "run_1", (SUMMARY, DETAIL, ACCURACY))


def _prepare_output(path: Path, overwrite: bool) -> None:
    occupied = path.exists() and (not path.is_dir() or any(path.iterdir()))
    if occupied and not (overwrite and (path / EXPORT_MARK).is_file()):
        raise BertbenchError(
            f"{path}: exists and is not empty (choose a new folder; --overwrite replaces an earlier export)"
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


def run_export(config: ExportConfig) -> None:
    """Write the submission tree of the selected runs: one system per machine, each with its own description."""
    _prepare_output(config.output, config.overwrite)
    store = ResultsStore(config.store, read_only=True)
    where = list(config.where) + ([f"workload={config.workload}"] if config.workload else [])
    runs = select(store.runs(), where, None, ("finished",))
    entries, refused = choose(runs)
    for reason in refused:
        warn(f"left out: {reason}")
    if not entries:
        raise BertbenchError(f"{store.path}: no run can be exported ({len(refused)} left out, see above)")
    systems = _systems(config, entries)
    unknown: dict[str, list[str]] = {}
    with atomic_directory(config.output) as tmp:
        root = tmp / config.division / config.submitter
        for system, found in systems.items():
            description, unknown[system] = system_description(
                found[0].performance, config.division, config.submitter, system
            )
            atomic_write_json(root / "systems" / f"{system}.json", description)
            for entry in found:
                _write_entry(root, system, entry, store.path)
        first = entries[0].performance
        code = f"bertbench {first.get('bertbench_version')}, git {first.get('git_sha')}\n"
        atomic_write_text(root / "code" / "README.md", code)
        mark = {"entries": len(entries), "systems": list(systems), "left_out": refused, "system_unknown": unknown}
        atomic_write_json(tmp / EXPORT_MARK, mark)
    names = ", ".join(systems)
    info(f"wrote {config.output}: {len(entries)} result(s) of {names}, {len(refused)} run(s) left out")
    for system, fields in unknown.items():
        info(f"the description of {system} could not fill: {', '.join(fields)}")
