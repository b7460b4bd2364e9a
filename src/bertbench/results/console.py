"""Short result tables for the terminal (stdout); notices and warnings are `bertbench.console`'s."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from bertbench.results.formatting import format_cell

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; results tables are wider than that.
stdout_console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)


def _fmt(value: Any, column: str | None = None) -> str:
    return format_cell(value, column)  # the one number format of every table


def print_result_table(title: str, record: dict[str, Any], keys: list[str]) -> None:
    """One two-column table of the chosen record keys (missing keys are skipped)."""
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", justify="right")
    for key in keys:
        if key in record:
            table.add_row(key, _fmt(record[key]))
    stdout_console.print(table)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if isinstance(rows[0][column], str) else "right")
    for row in rows:
        table.add_row(*(_fmt(row.get(column), column) for column in columns))
    return table


def print_rows_table(title: str, rows: list[dict[str, Any]], optional: tuple[str, ...] = ()) -> None:
    """A table with one row per dict (columns from the first row's keys); the `optional` columns are left out when
    the table would not fit the output's width with them."""
    if not rows:
        return
    columns = list(rows[0])
    table = _table(title, rows, columns)
    natural = stdout_console.measure(table, options=stdout_console.options.update(max_width=100_000)).maximum
    if optional and natural > stdout_console.width:
        table = _table(title, rows, [c for c in columns if c not in optional])
    stdout_console.print(table)
