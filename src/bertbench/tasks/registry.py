"""Task registry: name -> options class (imported now: light) and implementation (imported on first use, so
that parsing a command line never imports torch)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bertbench.tasks.mlm.options import MlmOptions
from bertbench.tasks.ner.options import NerOptions
from bertbench.tasks.sentences.options import SentenceOptions
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
    served: bool = True  # every runtime runs its models (masked LM's vocabulary-sized outputs run on torch only)


TASKS: dict[str, TaskEntry] = {
    "squad": TaskEntry(SquadOptions, "bertbench.tasks.squad.task:SQUAD", trainable=True),
    "sst2": TaskEntry(Sst2Options, "bertbench.tasks.sst2.task:SST2", trainable=True),
    "mlm": TaskEntry(MlmOptions, "bertbench.tasks.mlm.task:MLM", trainable=False, served=False),
    "ner": TaskEntry(NerOptions, "bertbench.tasks.ner.task:NER", trainable=True),
    "tnews": TaskEntry(SentenceOptions, "bertbench.tasks.sentences.task:TNEWS", trainable=True),
    "mrpc": TaskEntry(SentenceOptions, "bertbench.tasks.sentences.task:MRPC", trainable=True),
    "rte": TaskEntry(SentenceOptions, "bertbench.tasks.sentences.task:RTE", trainable=True),
    "stsb": TaskEntry(SentenceOptions, "bertbench.tasks.sentences.task:STSB", trainable=True),
}
SERVED_TASKS = tuple(name for name, entry in TASKS.items() if entry.served)


def get_task(name: str) -> Task:
    """The Task object registered as `name`."""
    module, attribute = TASKS[name].implementation.split(":")
    return getattr(importlib.import_module(module), attribute)
