"""Regressions: a metric worse than the best earlier run of the same experiment (results.identity) by more than
its noise."""

from __future__ import annotations

import statistics
from typing import Any

from bertbench.results.identity import identity_key
from bertbench.results.kpi import KpiRow

# metric -> (higher is better, noise assumed when fewer than two earlier runs exist)
WATCHED = {
    "throughput": (True, ("relative", 0.05)),
    "latency_p90_ms": (False, ("relative", 0.10)),
    "f1": (True, ("absolute", 1.4)),  # standard error of F1 over ~800 questions
    "exact_match": (True, ("absolute", 1.7)),
    "accuracy": (True, ("absolute", 0.01)),
    "mlm_accuracy": (True, ("absolute", 0.005)),
}


def _noise(metric: str, earlier: list[float], best: float) -> float:
    if len(earlier) >= 2:
        return statistics.stdev(earlier)
    kind, amount = WATCHED[metric][1]
    return amount * abs(best) if kind == "relative" else amount


def flag_regressions(rows: list[KpiRow], history: list[dict[str, Any]]) -> None:
    """Mark each metric worse than the best earlier run of the same experiment by more than its noise (the spread
    of those earlier runs, or an assumed noise while there are fewer than two). Contended runs never count. The
    machine is part of the experiment: a fleet's slower host is no regression."""
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    position = {run.get("uid"): i for i, run in enumerate(history)}  # history is oldest first
    for run in history:
        if not run.get("contended"):
            by_experiment.setdefault(identity_key(run), []).append(run)
    for row in rows:
        here = position.get(row.run.get("uid"), len(history))
        same = by_experiment.get(identity_key(row.run), [])
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
