"""Task registry: name -> options class (imported now: light) and implementation (imported on first use, so
that parsing a command line never imports torch)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bertbench.tasks.mlm.options import MlmOptions
from bertbench.tasks.squad.options import SquadOptions
from bertbench.tasks.sst2.options import Sst2Options

if TYPE_CHECKING:
    from bertbench.tasks.base import Task


@dataclass(frozen=True)
class TaskEntry:
    """Where a task's options and implementation live."""

    options_class: type
    implementation: str  # "module:attribute" of the Task object
    trainable: bool  # `finetune` accepts it (masked LM trains through `pretrain`)


TASKS: dict[str, TaskEntry] = {
    "squad": TaskEntry(SquadOptions, "bertbench.tasks.squad.task:SQUAD", trainable=True),
    "sst2": TaskEntry(Sst2Options, "bertbench.tasks.sst2.task:SST2", trainable=True),
    "mlm": TaskEntry(MlmOptions, "bertbench.tasks.mlm.task:MLM", trainable=False),
}


def get_task(name: str) -> Task:
    """The Task object registered as `name`."""
    module, attribute = TASKS[name].implementation.split(":")
    return getattr(importlib.import_module(module), attribute)
