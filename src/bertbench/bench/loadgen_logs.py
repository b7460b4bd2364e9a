"""Read what LoadGen wrote: the summary (figures exactly as printed), the detail log (validity, reasons, errors)
and the accuracy log (every sample's response bytes)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
ACCURACY = "mlperf_log_accuracy.json"
TEST_USER_CONF = "user.conf"  # the test's settings as one user.conf LoadGen reads, beside its logs

_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")  # LoadGen prints 1.04637e+06 past a million


def _slug(label: str) -> str:
    """'90.00 percentile latency (ns)' -> '90.00_percentile_latency_ns'."""
    text = label.strip().lower().replace("w/o", "without").replace("w/", "with")
    text = re.sub(r"[()]", "", text)
    return re.sub(r"[^a-z0-9.]+", "_", text).strip("_")


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def parse_summary(path: Path) -> dict[str, Any]:
    """Every `label : number` line of the summary, as `loadgen_<slug>` -> the number LoadGen printed, plus
    `loadgen_result` ("VALID"/"INVALID"), the failed checks and LoadGen's recommendations."""
    figures: dict[str, Any] = {}
    failed: list[str] = []
    notes: list[str] = []
    in_notes = False
    for line in path.read_text().splitlines():
        if line.startswith("Recommendations:") or line.startswith("Early Stopping Result:"):
            in_notes = True
            continue
        if in_notes and line.startswith(" * "):
            notes.append(line[3:].strip())
            continue
        in_notes = False
        label, sep, value = line.partition(":")
        value = value.strip()
        if not sep or not label.strip():
            continue
        if label.strip() == "Result is":
            figures["loadgen_result"] = value
        elif value in ("Yes", "NO") and label.strip().endswith("satisfied"):
            if value == "NO":
                failed.append(label.strip())
        elif _NUMBER.match(value):
            figures.setdefault(f"loadgen_{_slug(label)}", _number(value))
    figures["loadgen_failed_checks"] = failed
    figures["loadgen_notes"] = notes
    return figures


def parse_detail(path: Path) -> dict[str, Any]:
    """result_* values, the effective settings, and LoadGen's errors and warnings, from the detail log's :::MLLOG
    lines."""
    results: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    errors: list[str] = []
    warnings: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError:
            continue
        key, value, meta = entry.get("key", ""), entry.get("value"), entry.get("metadata", {})
        if key.startswith("result_"):
            results[key] = value
        elif key.startswith("effective_"):
            settings[key.removeprefix("effective_")] = value
        if meta.get("is_error"):
            errors.append(f"{key}: {value}")
        elif meta.get("is_warning"):
            warnings.append(f"{key}: {value}")
    return {"results": results, "settings": settings, "errors": errors, "warnings": warnings}


def detail_values(path: Path) -> tuple[dict[str, Any], int]:
    """The first value of every key of a detail log (as MLCommons' log parser reads it), and its error count."""
    values: dict[str, Any] = {}
    errors = 0
    for line in path.read_text().splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG ") :])
        except json.JSONDecodeError:
            continue
        values.setdefault(entry.get("key", ""), entry.get("value"))
        errors += bool(entry.get("metadata", {}).get("is_error"))
    return values, errors


def read_accuracy_entries(path: Path) -> list[tuple[int, bytes]]:
    """Every (QSL index, response bytes) LoadGen logged, in order; a sample issued twice is logged twice."""
    return [(int(e["qsl_idx"]), bytes.fromhex(e["data"])) for e in json.loads(path.read_text() or "[]")]


def read_accuracy_log(path: Path) -> dict[int, bytes]:
    """QSL index -> the response bytes LoadGen logged for it."""
    return dict(read_accuracy_entries(path))
