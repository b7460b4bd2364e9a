"""`report --compare A B`: runs of the same experiment in two run sets, with B/A ratios. Along one key, runs are
paired that differ only in that key and in what its declaration frees (results.identity): along precision or a
path key the path may differ (torch FP32 beside ONNX Runtime INT8), along a machine the placement."""

from __future__ import annotations

from typing import Any

from bertbench.errors import UsageError
from bertbench.results.identity import Role, freed_along, identity_key, keys_with
from bertbench.results.kpi import kpi_row
from bertbench.results.selection import as_text

SHOWN = ("Model", "Task", "Mode", "Scenario", "BatchSize", "Precision", "Backend", "Instances×Cores")
COMPARED = ("throughput", "latency_p90_ms", "f1", "accuracy", "mlm_accuracy")


def _along(a: str, b: str) -> str | None:
    """The key a comparison runs along: both selectors KEY=VALUE with the same KEY."""
    key_a, sep_a, _ = a.partition("=")
    key_b, sep_b, _ = b.partition("=")
    return key_a if sep_a and sep_b and key_a == key_b else None


def _path(run: dict[str, Any]) -> str:
    return " ".join(str(run[k]) for k in ("precision", "backend", "quantization") if run.get(k) is not None)


def _side(runs: list[dict[str, Any]], selector: str) -> list[dict[str, Any]]:
    key, sep, value = selector.partition("=")
    if sep:
        return [r for r in runs if as_text(r.get(key)) == value]
    key, sep, value = selector.partition("~")
    if sep:
        return [r for r in runs if value in as_text(r.get(key))]
    return [
        r
        for r in runs
        if str(r.get("uid", "")).startswith(selector)
        or str(r.get("git_sha", "")).startswith(selector)
        or r.get("hostname") == selector
    ]


def compare(runs: list[dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Rows of the same experiment in set A and set B, with B/A ratios. A selector is a run uid (prefix), a git SHA
    (prefix), a hostname, KEY=VALUE or KEY~SUBSTRING."""
    side_a, side_b = _side(runs, a), _side(runs, b)
    if not side_a or not side_b:
        missing = a if not side_a else b
        raise UsageError(
            f"--compare {missing}: no finished run matches (a uid, git SHA, hostname, KEY=VALUE or KEY~SUBSTRING)"
        )
    along = _along(a, b)
    free = freed_along(along) if along else set()
    path_keys = keys_with(Role.PATH)
    machine_keys = keys_with(Role.MACHINE)
    candidates: dict[str, list[dict[str, Any]]] = {}
    for run in side_a:
        candidates.setdefault(identity_key(run, free), []).append(run)
    rows = []
    for right in {identity_key(r): r for r in side_b}.values():
        lefts = [r for r in candidates.get(identity_key(right, free), []) if r is not right]
        if not lefts:
            continue
        # the same path first (most of its keys equal), then the newest run
        left = max(
            enumerate(lefts), key=lambda item: (sum(item[1].get(k) == right.get(k) for k in path_keys), item[0])
        )[1]
        values = kpi_row(right).values
        row: dict[str, Any] = {k: values[k] for k in SHOWN}
        if along in machine_keys:  # each side's own placement, when the machines differ in cores
            placements = [kpi_row(side).values["Instances×Cores"] for side in (left, right)]
            same = placements[0] == placements[1]
            row["Instances×Cores"] = placements[1] if same else " / ".join(map(str, placements))
        if along in ("precision", *path_keys):
            row.update({"A": _path(left), "B": _path(right)})
        elif along:  # along a machine, a commit, a data set: name each side by that key's value
            row.update({"A": as_text(left.get(along)), "B": as_text(right.get(along))})
        for metric in COMPARED:
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
