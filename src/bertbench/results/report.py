"""From stored runs to the KPI table the model-zoo pages publish: selection, one row per run, regressions
against the best earlier run of the same configuration, comparisons of two run sets, and text renderers."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bertbench.errors import UsageError
from bertbench.results.fleet import machine, machines
from bertbench.results.mlperf_layout import PAIR_KEYS, mlperf_target
from bertbench.results.store import StoredRun

KPI_COLUMNS = (
    "Model",
    "Task",
    "Mode",
    "Scenario",
    "BatchSize",
    "Precision",
    "Backend",
    "Instances×Cores",
    "samples/s",
    "p90 ms",
    "EM",
    "F1",
    "accuracy",
    "relative accuracy",
    "MLPerf target",
)
# The configuration that makes two runs comparable (same work, same way of doing it).
CONFIG_KEYS = ("command", "mode", *PAIR_KEYS)  # what a run is, and how it is run
# metric -> (higher is better, noise assumed when fewer than two earlier runs exist)
WATCHED = {
    "throughput": (True, ("relative", 0.05)),
    "latency_p90_ms": (False, ("relative", 0.10)),
    "f1": (True, ("absolute", 1.4)),  # standard error of F1 over ~800 questions
    "exact_match": (True, ("absolute", 1.7)),
    "accuracy": (True, ("absolute", 0.01)),
    "mlm_accuracy": (True, ("absolute", 0.005)),
}


@dataclass
class KpiRow:
    """One run as a KPI row (values keyed by KPI_COLUMNS), with what the report needs besides."""

    values: dict[str, Any]
    run: dict[str, Any]
    regressions: list[str] = field(default_factory=list)


def _short_model(name: str) -> str:
    return Path(name).name if "/" in name else name


def model_label(run: dict[str, Any]) -> str:
    """The model as people name it: `minilm-l6`; a model bertbench trained as what it came from and how
    (`minilm-l6 fine-tuned on sst2 by CASE`); `(random)` for random weights."""
    name = _short_model(str(run.get("model", "?")))
    how = str(run.get("trained_as") or "")
    if how.startswith("prune"):
        fraction = run.get("flops_fraction")
        share = f" to {fraction:.0%} of its FLOPs" if isinstance(fraction, int | float) else ""
        return f"{parent_label(run)} pruned{share} by {run.get('trained_by')}"
    if run.get("base_model") and how:
        name = _trained_label(str(run["base_model"]), how, run.get("trained_by"))
    return f"{name} (random)" if run.get("random_weights") else name


def _trained_label(base: str, how: str, by: Any) -> str:
    done = f"fine-tuned on {how.split()[-1]}" if how.startswith("finetune") else "pretrained"
    return f"{_short_model(base)} {done} by {by}"


def parent_label(run: dict[str, Any]) -> str:
    """A pruned model's parent as model_label names the parent's own runs (its own label when not pruned)."""
    if not str(run.get("trained_as") or "").startswith("prune"):
        return model_label(run)
    how, base = run.get("parent_trained_as"), run.get("base_model")
    if how and base:
        return _trained_label(str(base), str(how), run.get("parent_trained_by"))
    # base_model: the parent's name as given (minilm-l6, a hub id, a folder) when bertbench did not train it
    name = _short_model(str(base or run.get("parent_model") or "?"))
    return f"{name} (random)" if run.get("parent_random_weights") else name


def beside_parents(rows: list[KpiRow]) -> list[KpiRow]:
    """Each row of a pruned model moved right after the last row of its parent (or of an earlier pruned child of
    it); every other row keeps its place. A pruned row whose parent has no row stays where it was."""
    pruned = [i for i, row in enumerate(rows) if str(row.run.get("trained_as") or "").startswith("prune")]
    if not pruned:
        return rows
    order = [i for i in range(len(rows)) if i not in pruned]  # indices into rows, by identity not equality
    for i in pruned:
        parent = parent_label(rows[i].run)
        family = [at for at, j in enumerate(order) if parent_label(rows[j].run) == parent]
        earlier = [at for at, j in enumerate(order) if j < i]
        order.insert(family[-1] + 1 if family else (max(earlier) + 1 if earlier else 0), i)
    return [rows[i] for i in order]


def _mode(run: dict[str, Any]) -> str:
    command = run.get("command")
    if command == "bench":
        return str(run.get("mode", "performance"))
    if command == "eval":
        return "accuracy"
    if command in ("finetune", "pretrain"):
        return "training"
    return str(command)


def _precision(run: dict[str, Any]) -> Any:
    precision = run.get("precision", run.get("train_amp"))
    if precision == "int8" and run.get("quantization"):
        return f"int8 {run['quantization']}"
    return precision


def kpi_row(run: dict[str, Any]) -> KpiRow:
    """The KPI columns of one flat run record."""
    training = run.get("command") in ("finetune", "pretrain")
    meaningful = not run.get("random_weights") and not run.get("parent_random_weights")
    throughput = run.get("train_samples_per_s") if training else run.get("throughput")
    instances = run.get("instances")
    values = {
        "Model": model_label(run),
        "Task": run.get("task"),
        "Mode": _mode(run),
        "Scenario": run.get("scenario"),
        "BatchSize": run.get("batch_size", run.get("train_batch_size")),
        "Precision": _precision(run),
        "Backend": run.get("backend", "torch" if training else None),
        "Instances×Cores": f"{instances}×{run.get('cores_per_instance')}" if instances else None,
        "samples/s": throughput,
        # An Offline query is the whole data set: its latency is no service latency, so no p90 is shown for it.
        "p90 ms": run.get("latency_p90_ms") if run.get("scenario") != "offline" else None,
        "EM": run.get("exact_match") if meaningful else None,
        "F1": run.get("f1") if meaningful else None,
        "accuracy": (run.get("accuracy") if run.get("accuracy") is not None else run.get("mlm_accuracy"))
        if meaningful
        else None,
        "relative accuracy": run.get("relative_accuracy") if meaningful else None,
        # beside our relative accuracy: MLPerf's absolute F1 thresholds, for a checkpoint shaped like its reference
        "MLPerf target": mlperf_target(run),
    }
    return KpiRow(values, run)


def config_key(run: dict[str, Any]) -> str:
    """What must match for two runs to be the same experiment."""
    return json.dumps([run.get(k) for k in CONFIG_KEYS], default=str)


def _noise(metric: str, earlier: list[float], best: float) -> float:
    if len(earlier) >= 2:
        return statistics.stdev(earlier)
    kind, amount = WATCHED[metric][1]
    return amount * abs(best) if kind == "relative" else amount


def flag_regressions(rows: list[KpiRow], history: list[dict[str, Any]]) -> None:
    """Mark each metric worse than the best earlier run of the same config by more than its noise (the spread
    of those earlier runs, or an assumed noise while there are fewer than two). Contended runs never count."""
    by_config: dict[tuple[str, str], list[dict[str, Any]]] = {}
    position = {run.get("uid"): i for i, run in enumerate(history)}  # history is oldest first
    # a configuration is judged against itself on the same machine: a fleet's slower host is no regression
    for run in history:
        if not run.get("contended"):
            by_config.setdefault((config_key(run), machine(run)), []).append(run)
    for row in rows:
        here = position.get(row.run.get("uid"), len(history))
        same = by_config.get((config_key(row.run), machine(row.run)), [])
        earlier = [r for r in same if position[r.get("uid")] < here]
        if row.run.get("contended") or not earlier:
            continue
        for metric, (higher, _) in WATCHED.items():
            value = row.run.get(metric)
            past = [r[metric] for r in earlier if isinstance(r.get(metric), int | float)]
            if not isinstance(value, int | float) or not past:
                continue
            best = max(past) if higher else min(past)
            worse_by = (best - value) if higher else (value - best)
            if worse_by > _noise(metric, past, best):
                row.regressions.append(f"{metric} {value:.4g} vs best {best:.4g}")


def select(runs: list[StoredRun], where: list[str], last: int | None, statuses: tuple[str, ...]) -> list[dict]:
    """Flat runs with one of `statuses` matching every KEY=VALUE of `where` (compared as text); the newest
    `last` of them."""
    conditions = []
    for item in where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--where {item}: expected KEY=VALUE (e.g. precision=int8)")
        conditions.append((key, value))
    chosen = []
    for run in runs:
        if run.status not in statuses:
            continue
        flat = run.flat()
        if all(_text(flat.get(key)) == value for key, value in conditions):
            chosen.append(flat)
    return chosen[-last:] if last else chosen


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def references() -> list[dict[str, Any]]:
    """The published KPIs of the pages we reproduce (their numbers, with their sources)."""
    text = (resources.files("bertbench.results") / "references.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# ---- comparison ------------------------------------------------------------------------------------------------


# How a configuration is run (not what is run): a comparison along one of these may let the others differ too,
# since FP32 and INT8 of one model are often different paths (torch FP32 beside ONNX Runtime INT8).
PATH_KEYS = ("backend", "quantization", "per_channel", "reduce_range", "int8_weights", "quantize_attention", "compiled")


# Keys that name a machine; along one of them, how many threads and cores per instance each side used may differ.
MACHINE_KEYS = ("hostname", "cpu_model", "cores_available")
PLACEMENT_KEYS = ("threads", "cores_per_instance")


def _along(a: str, b: str) -> str | None:
    """The key a comparison runs along: both selectors KEY=VALUE with the same KEY."""
    key_a, sep_a, _ = a.partition("=")
    key_b, sep_b, _ = b.partition("=")
    return key_a if sep_a and sep_b and key_a == key_b else None


def _path(run: dict[str, Any]) -> str:
    return " ".join(str(run[k]) for k in ("precision", "backend", "quantization") if run.get(k) is not None)


def compare(runs: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Rows of the same config in set A and set B, with B/A ratios. A selector is a run uid (prefix), a git SHA
    (prefix), a hostname, KEY=VALUE or KEY~SUBSTRING. Along one key (`precision=fp32 precision=int8`) runs are
    paired that differ only in that key and in how they are run (backend, INT8 settings): the same path where
    there is one."""
    side_a, side_b = _side(runs, a), _side(runs, b)
    if not side_a or not side_b:
        missing = a if not side_a else b
        raise UsageError(
            f"--compare {missing}: no finished run matches (a uid, git SHA, hostname, KEY=VALUE or KEY~SUBSTRING)"
        )
    along = _along(a, b)
    free = {along, *(PATH_KEYS if along in ("precision", *PATH_KEYS) else ())} if along else set()
    if along in MACHINE_KEYS:  # each machine runs a configuration on its own cores by default
        free |= set(PLACEMENT_KEYS)

    def pairing(run: dict[str, Any]) -> str:
        return json.dumps([run.get(k) for k in CONFIG_KEYS if k not in free], default=str)

    candidates: dict[str, list[dict[str, Any]]] = {}
    for run in side_a:
        candidates.setdefault(pairing(run), []).append(run)
    rows = []
    for right in {config_key(r): r for r in side_b}.values():
        lefts = [r for r in candidates.get(pairing(right), []) if r is not right]
        if not lefts:
            continue
        # the same path first (most of its keys equal), then the newest run
        left = max(
            enumerate(lefts), key=lambda item: (sum(item[1].get(k) == right.get(k) for k in PATH_KEYS), item[0])
        )[1]
        values = kpi_row(right).values
        shown = ("Model", "Task", "Mode", "Scenario", "BatchSize", "Precision", "Backend", "Instances×Cores")
        row: dict[str, Any] = {k: values[k] for k in shown}
        if along in MACHINE_KEYS:  # each side's own placement, when the machines differ in cores
            placements = [kpi_row(side).values["Instances×Cores"] for side in (left, right)]
            same = placements[0] == placements[1]
            row["Instances×Cores"] = placements[1] if same else " / ".join(map(str, placements))
        if along in ("precision", *PATH_KEYS):
            row.update({"A": _path(left), "B": _path(right)})
        elif along:  # along a machine, a commit, a data set: name each side by that key's value
            row.update({"A": _text(left.get(along)), "B": _text(right.get(along))})
        for metric in ("throughput", "latency_p90_ms", "f1", "accuracy", "mlm_accuracy"):
            if metric == "latency_p90_ms" and right.get("scenario") == "offline":
                continue  # an Offline query's latency is no service latency
            x, y = left.get(metric), right.get(metric)
            if isinstance(x, int | float) and isinstance(y, int | float):
                row[f"{metric} A"] = x
                row[f"{metric} B"] = y
                row[f"{metric} B/A"] = y / x if x else None
        rows.append(row)
    if not rows:
        hint = f" other than {along}" if along else ""
        raise UsageError(f"--compare {a} {b}: no run of one set has the configuration of a run of the other{hint}")
    return rows


def _side(runs: list[dict[str, Any]], selector: str) -> list[dict[str, Any]]:
    key, sep, value = selector.partition("=")
    if sep:
        return [r for r in runs if _text(r.get(key)) == value]
    key, sep, value = selector.partition("~")
    if sep:
        return [r for r in runs if value in _text(r.get(key))]
    return [
        r
        for r in runs
        if str(r.get("uid", "")).startswith(selector)
        or str(r.get("git_sha", "")).startswith(selector)
        or r.get("hostname") == selector
    ]


# ---- renderers -------------------------------------------------------------------------------------------------


# Decimals of each KPI column, the same in every row (other columns: 4 significant digits); a comparison's
# columns ("throughput A", "f1 B/A") take those of their metric, and ratios 3.
COLUMN_DECIMALS = {"samples/s": 1, "p90 ms": 1, "EM": 2, "F1": 2, "accuracy": 4, "relative accuracy": 4}
METRIC_DECIMALS = {"throughput": 1, "latency_p90_ms": 1, "f1": 2, "accuracy": 4, "mlm_accuracy": 4}


def _decimals(column: str | None) -> int | None:
    if column is None:
        return None
    if column in COLUMN_DECIMALS:
        return COLUMN_DECIMALS[column]
    metric, _, side = column.rpartition(" ")
    if side == "B/A":
        return 3
    return METRIC_DECIMALS.get(metric) if side in ("A", "B") else None


def format_cell(value: Any, column: str | None = None) -> str:
    """A cell as text: `-` for nothing, yes/no, numbers with their column's decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    decimals = _decimals(column)
    if isinstance(value, float) and decimals is not None:
        return f"{value:.{decimals}f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def timing_label(run: dict[str, Any]) -> str | None:
    """How far a run's timed figure can be trusted: `quiet`, `contended`, `quiet (no roof)` when only other
    processes' CPU was watched, or `not checked` (a record from before every timed figure was checked)."""
    if run.get("throughput") is None and run.get("train_samples_per_s") is None:
        return None
    if "contended" not in run:
        return "not checked"
    if run["contended"]:
        return "contended"
    return "quiet" if run.get("quiet_roof_known", True) else "quiet (no roof)"


def table_rows(rows: list[KpiRow]) -> list[dict[str, Any]]:
    """KPI values plus the case they come from and the marks a reader needs (timing, validity, regressions)."""
    out = []
    fleet = len(machines([row.run for row in rows])) > 1  # runs of several machines: say which row is whose
    for row in rows:
        marks = []
        label = timing_label(row.run)
        if label:
            marks.append(label)
        if row.run.get("result_valid") is False:
            marks.append("INVALID")
        if row.regressions:
            marks.append("regression: " + "; ".join(row.regressions))
        place = {"Machine": machine(row.run)} if fleet else {}
        out.append({**row.values, **place, "Case": row.run.get("case_name"), "notes": ", ".join(marks)})
    return out


def kpi_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The KPI rows of these flat runs without the columns no row fills: one command's own summary (`bench`)."""
    rows = table_rows([kpi_row(run) for run in runs])
    keep = [column for column in (rows[0] if rows else {}) if any(row[column] not in (None, "") for row in rows)]
    return [{column: row[column] for column in keep} for row in rows]


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """markdown, csv or json text of plain row dicts."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows may differ (a comparison's metrics)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(format_cell(row.get(c), c) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
