"""Task registry: a plain dict from the CLI's task name to its module."""

from __future__ import annotations

from types import ModuleType

from bertbench.tasks.mlm import task as mlm_task
from bertbench.tasks.squad import task as squad_task
from bertbench.tasks.sst2 import task as sst2_task

TASKS: dict[str, ModuleType] = {"squad": squad_task, "sst2": sst2_task, "mlm": mlm_task}
