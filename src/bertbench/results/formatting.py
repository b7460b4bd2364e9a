"""Cells and tables as text: one number format per column, and Markdown, CSV or JSON renderings of row dicts."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

# Decimals of each KPI column, the same in every row (other columns: 4 significant digits); a comparison's
# columns ("throughput A", "f1 B/A") take those of their metric, and ratios 3.
COLUMN_DECIMALS = {"samples/s": 1, "p90 ms": 1, "EM": 2, "F1": 2, "accuracy": 4, "Pearson": 4, "relative accuracy": 4}
METRIC_DECIMALS = {"throughput": 1, "latency_p90_ms": 1, "f1": 2, "accuracy": 4, "mlm_accuracy": 4, "pearson": 4}
# SQuAD reports F1 in percent, GLUE and the NER scorers as a fraction: a fraction keeps the decimals of accuracy.
FRACTION_DECIMALS = 4


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
    if decimals == 2 and isinstance(value, float) and abs(value) <= 1:
        decimals = FRACTION_DECIMALS
    if isinstance(value, float) and decimals is not None:
        return f"{value:.{decimals}f}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


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
