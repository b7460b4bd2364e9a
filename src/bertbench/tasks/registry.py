"""Task registry: a plain dict from the CLI's task name to its module."""

from __future__ import annotations

from types import ModuleType

from bertbench.tasks.squad import task as squad_task

TASKS: dict[str, ModuleType] = {"squad": squad_task}
