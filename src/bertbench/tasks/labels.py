"""The label set of a task's head: read from the data, stored in the model's config (`id2label`, `problem_type`)
as transformers reads it, and the one both training and scoring use.

A model already trained on a label set keeps it (its head's rows are in that order); a model without one (an
encoder, a random preset, a head of other labels) gets the data's, and its head starts fresh.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertbench.errors import BertbenchError

if TYPE_CHECKING:
    from bertbench.models import ModelSource
    from bertbench.models.bert import BertHeadModel
    from bertbench.models.config import BertConfig
    from bertbench.tasks.base import Task

REGRESSION = "regression"
SINGLE_LABEL = "single_label_classification"


@dataclass(frozen=True)
class LabelSet:
    """Label names in head-row order, and transformers' `problem_type` of the head (None for token tagging, whose
    head transformers does not type); a regression head has one output."""

    names: tuple[str, ...]
    problem_type: str | None = None

    @property
    def regression(self) -> bool:
        """Whether the head predicts a score rather than classes."""
        return self.problem_type == REGRESSION

    def index(self) -> dict[str, int]:
        """Label name -> head row."""
        return {name: i for i, name in enumerate(self.names)}


def trained_labels(config: BertConfig, head: type[BertHeadModel]) -> LabelSet | None:
    """The label set a config says its `head` was trained on; None when it names none (transformers' default
    `LABEL_i` names, another architecture, or no id2label at all)."""
    id2label = config.extra.get("id2label")
    if not isinstance(id2label, dict) or config.extra.get("architectures") != [head.architecture]:
        return None
    try:
        names = tuple(str(id2label[str(i)]) for i in range(len(id2label)))
    except KeyError:
        return None
    problem_type = config.extra.get("problem_type")
    if problem_type != REGRESSION and all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return LabelSet(names, problem_type)


def with_labels(config: BertConfig, labels: LabelSet) -> BertConfig:
    """`config` with a head for `labels`: num_labels, id2label/label2id and problem_type set."""
    extra = {k: v for k, v in config.extra.items() if k not in ("id2label", "label2id", "problem_type")}
    extra["id2label"] = {str(i): name for i, name in enumerate(labels.names)}
    extra["label2id"] = {name: i for i, name in enumerate(labels.names)}
    if labels.problem_type:
        extra["problem_type"] = labels.problem_type
    return replace(config, num_labels=len(labels.names), extra=extra)


def fit_labels(
    source: ModelSource, head: type[BertHeadModel], regression: bool, read: Callable[[], LabelSet]
) -> ModelSource:
    """The source whose head has the right labels: its own when trained on some (a gold label it lacks is refused
    where the data is read), else those `read()` finds in the data (the head is then fresh). A trained head of the
    other kind (a score for classes, classes for a score) is refused."""
    own = trained_labels(source.config, head) if not source.random_weights else None
    if own is None:
        return replace(source, config=with_labels(source.config, read()))
    if own.regression != regression:
        kinds = {True: "a regression score", False: "classes"}
        raise BertbenchError(
            f"model {source.name} predicts {kinds[own.regression]}; this task needs {kinds[regression]}"
        )
    return source


def model_labels(config: BertConfig) -> LabelSet:
    """The label set a loaded (fitted) model's config declares."""
    id2label = config.extra.get("id2label") or {}
    names = tuple(str(id2label.get(str(i), f"LABEL_{i}")) for i in range(config.num_labels))
    return LabelSet(names, config.extra.get("problem_type"))


def fit_task_labels(
    task: Task, source: ModelSource, paths: Path | Sequence[Path] | None = None, labels: LabelSet | None = None
) -> ModelSource:
    """For a task whose head predicts labels read from data: the source fitted to them (a model trained on labels
    keeps its own; another gets `labels`, or those of `paths`: the training file when training, the scored file
    otherwise). Other tasks' sources pass unchanged."""
    reader = getattr(task, "data_labels", None)
    if reader is None:
        return source
    regression = bool(getattr(task, "regression", False))
    return fit_labels(source, task.head, regression, lambda: labels if labels is not None else reader(paths))


def label_rows(values: Sequence[Any], labels: LabelSet, where: Sequence[str]) -> list[int]:
    """Gold label names -> head rows; an unknown one is one error naming its file and row (`where[i]`)."""
    index = labels.index()
    rows = []
    for value, place in zip(values, where, strict=True):
        if value not in index:
            known = ", ".join(labels.names[:20]) + (" …" if len(labels.names) > 20 else "")
            raise BertbenchError(f"{place}: label {value!r} is not one the model predicts ({known})")
        rows.append(index[value])
    return rows


def head_labels(task: Task, config: BertConfig) -> LabelSet | None:
    """The labels a fitted model's head predicts, for a task that reads labels from data (None for the others)."""
    return model_labels(config) if hasattr(task, "data_labels") else None
