"""One run as a row of the KPI table the model-zoo pages publish: its columns, the model named as people name it (a
trained or pruned model by where it came from), pruned models placed beside their parents, and the marks a reader
needs (timing, validity, regressions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.results.fleet import machine, machines
from bertbench.results.mlperf_layout import mlperf_target

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
    "Pearson",
    "relative accuracy",
    "MLPerf target",
)


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
        fraction, latency = run.get("flops_fraction"), run.get("pruning_latency_fraction")
        share = f" to {fraction:.0%} of its FLOPs" if isinstance(fraction, int | float) else ""
        if isinstance(latency, int | float) and isinstance(fraction, int | float):  # budgeted in time: both shown
            share = f" to {latency:.0%} of its {run.get('pruning_latency_on')} time ({fraction:.0%} of its FLOPs)"
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
        "Pearson": run.get("pearson") if meaningful else None,  # STS-B's score (a fraction, as GLUE reports it)
        "relative accuracy": run.get("relative_accuracy") if meaningful else None,
        # beside our relative accuracy: MLPerf's absolute F1 thresholds, for a checkpoint shaped like its reference
        "MLPerf target": mlperf_target(run),
    }
    return KpiRow(values, run)


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
