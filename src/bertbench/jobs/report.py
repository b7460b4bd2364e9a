"""`bertbench report`: read the stores, print the KPI table (or a comparison), write the HTML page; and the page
and table that end `bertbench run`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from bertbench.configs import ReportConfig
from bertbench.console import info, warn
from bertbench.errors import UsageError
from bertbench.io_utils import atomic_write_text
from bertbench.jobs.common import check_new_file
from bertbench.results.comparison import compare
from bertbench.results.console import print_rows_table, stdout_console
from bertbench.results.fleet import open_stores, read_runs
from bertbench.results.formatting import render
from bertbench.results.html import GENERATOR, render_html
from bertbench.results.kpi import KpiRow, beside_parents, kpi_row, table_rows
from bertbench.results.regressions import flag_regressions
from bertbench.results.selection import references, select
from bertbench.results.store import ResultsStore

RECORD_COMMANDS = ("eval", "bench", "finetune", "pretrain")  # the commands whose rows make KPI rows


def _kpi_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("command") in RECORD_COMMANDS and r.get("status") == "finished"]


def kpi_rows(runs: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[KpiRow]:
    """KPI rows of the finished eval/bench/training runs, regressions judged against `history`."""
    rows = [kpi_row(r) for r in _kpi_runs(runs)]
    flag_regressions(rows, history)
    return beside_parents(rows)


def write_html(path: Path, title: str, rows: list[KpiRow]) -> None:
    """The self-contained HTML report of these KPI rows."""
    atomic_write_text(path, render_html(title, rows, [row.run for row in rows], references()))


def workload_report(store: ResultsStore, workload: str, cases: list[str], html_path: Path) -> None:
    """After `bertbench run`: the KPI table of the latest finished row of each case, and the HTML page."""
    history = [r.flat() for r in store.runs("status = 'finished'")]
    latest: dict[str, list[dict[str, Any]]] = {}
    for run in store.runs("workload = ? AND status = 'finished'", (workload,)):
        if run.case_name not in cases:
            continue
        if run.parent_uid is None:  # a case's newest row replaces its older ones
            latest[run.case_name] = [run.flat()]
        elif latest.get(run.case_name, [{}])[0].get("uid") == run.parent_uid:  # a sweep's further records
            latest[run.case_name].append(run.flat())
    rows = kpi_rows([r for case in cases for r in latest.get(case, [])], history)
    print_rows_table(f"bertbench run {workload}: KPIs", table_rows(rows), optional=("Case",))
    write_html(html_path, f"bertbench — workload {workload}", rows)


def run_report(config: ReportConfig) -> None:
    """Select runs, then print or write the table; --html writes the page; --compare prints ratios."""
    if config.output is not None:
        check_new_file(config.output, config.overwrite)
    if config.html is not None:
        check_new_file(config.html, config.overwrite, ours=GENERATOR)
    stores = open_stores(config.store)
    statuses = ("finished", "failed", "interrupted", "running") if config.include_failed else ("finished",)
    where = list(config.where) + ([f"workload={config.workload}"] if config.workload else [])
    everything = read_runs(stores)
    _check_where_keys(config.where, everything)
    runs = select(everything, where, None, statuses)
    if not config.include_failed:
        runs = _kpi_runs(runs)  # --last counts KPI rows, not the `run` and `build-corpus` rows beside them
    runs = runs[-config.last :] if config.last else runs
    history = [r.flat() for r in everything if r.status == "finished"]
    if config.compare:
        if len(config.compare) != 2:
            raise UsageError(f"--compare takes two run sets, got {len(config.compare)}")
        rows = compare(_kpi_runs(runs), *config.compare)
        _emit(rows, config, f"compare {config.compare[0]} (A) with {config.compare[1]} (B)")
        return
    if config.include_failed:
        rows = [
            {
                "uid": r["uid"][:8],
                "command": r["command"],
                "status": r["status"],
                "case": r.get("case_name"),
                "started": r["started_at"],
                "output": r.get("output_dir"),
            }
            for r in runs
        ]
        _emit(rows, config, "runs")
    else:
        kpis = kpi_rows(runs, history)
        _emit(table_rows(kpis), config, f"bertbench KPIs ({', '.join(str(store.path) for store in stores)})")
        for row in kpis:
            if row.regressions:
                warn(f"regression in {row.values['Model']} {row.values['Mode']}: {'; '.join(row.regressions)}")
    if config.html:
        write_html(config.html, "bertbench report", kpi_rows(runs, history))
        info(f"wrote {config.html}")


def _check_where_keys(conditions: tuple[str, ...], runs: list[Any]) -> None:
    """A --where key no run has is a typo, not an empty selection: one line with the nearest keys, exit 2."""
    known: set[str] = set()
    for run in runs:
        known.update(run.flat())
    for item in conditions:
        key = item.partition("=")[0]
        if runs and key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"--where {item}: no run in the store has the key {key!r}{hint}")


def _emit(rows: list[dict[str, Any]], config: ReportConfig, title: str) -> None:
    if not rows:
        warn("no run matches (see --where, --last, --workload, --include-failed)")
    if config.format == "table" and config.output is None:
        print_rows_table(title, rows, optional=("Case",))
        return
    text = render(rows, "markdown" if config.format == "table" else config.format)
    if config.output is not None:
        atomic_write_text(config.output, text)
        info(f"wrote {config.output}")
    else:
        stdout_console.print(text, end="", soft_wrap=True, markup=False, highlight=False)
