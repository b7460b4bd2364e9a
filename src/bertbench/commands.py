"""The command table: each sub-command's config dataclass, the job that runs it and the tasks it takes. The CLI
generates its grammar from it; workloads build their cases from it (the same options, checked the same way) and
turn them back into command lines. Imports nothing heavy: jobs are named, not imported."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertbench.cliargs import OptionValueError, from_namespace, namespace_from_mapping, to_argv
from bertbench.configs import (
    BenchConfig,
    BenchRoofConfig,
    BuildCorpusConfig,
    ConvertConfig,
    EvalConfig,
    ExportConfig,
    FinetuneConfig,
    PretrainConfig,
    PruneConfig,
    ReportConfig,
    ResultsConfig,
    RunConfig,
)
from bertbench.errors import UsageError
from bertbench.tasks.registry import SERVED_TASKS, TASKS
from bertbench.writes import check_writes


@dataclass(frozen=True)
class Command:
    """One sub-command: its config class, its job ("module:function"), and the tasks it takes (if any)."""

    help: str
    config: type
    job: str
    tasks: tuple[str, ...] = ()
    # (config, job) run when no task is given: options on the command itself (`bench --roof`)
    standalone: tuple[type, str] | None = None
    recorded: bool = True  # its runs become rows of the results store (reading commands do not)
    # ... except the runs this says are only looking (`run --list`, `run --dry-run` run nothing)
    only_looks: Callable[[Any], bool] = lambda config: False
    in_workloads: bool = False  # a workload case may run it
    distributed: bool = False  # it may run under torchrun (a case's `processes` > 1)


COMMANDS: dict[str, Command] = {
    "run": Command(
        "the main job: run a workload's cases (default: the built-in main job), then the KPI table and report",
        RunConfig,
        "bertbench.jobs.run:run_workload",
        only_looks=lambda config: config.list_cases or config.dry_run,
    ),
    "eval": Command(
        "accuracy mode: score a model on a task's data",
        EvalConfig,
        "bertbench.jobs.evaluate:run_eval",
        tuple(TASKS),
        in_workloads=True,
    ),
    "bench": Command(
        "performance mode: MLPerf LoadGen scenarios, pinned instances, honest timing",
        BenchConfig,
        "bertbench.jobs.bench:run_bench",
        SERVED_TASKS,
        standalone=(BenchRoofConfig, "bertbench.jobs.bench_roof:run_roof"),
        in_workloads=True,
    ),
    "finetune": Command(
        "fine-tune a model on a task",
        FinetuneConfig,
        "bertbench.jobs.finetune:run_finetune",
        tuple(name for name, entry in TASKS.items() if entry.trainable),
        in_workloads=True,
        distributed=True,
    ),
    "prune": Command(
        "remove attention heads and feed-forward neurons of a fine-tuned model to a FLOP budget (no retraining)",
        PruneConfig,
        "bertbench.jobs.prune:run_prune",
        SERVED_TASKS,
        in_workloads=True,
    ),
    "pretrain": Command(
        "masked-LM pretraining with a target accuracy",
        PretrainConfig,
        "bertbench.jobs.pretrain:run_pretrain",
        in_workloads=True,
        distributed=True,
    ),
    "build-corpus": Command(
        "write a pretraining corpus from SQuAD contexts and SST-2 sentences",
        BuildCorpusConfig,
        "bertbench.jobs.corpus:run_build_corpus",
        in_workloads=True,
    ),
    "convert": Command(
        "a TensorFlow 1 (Google), MindSpore or NVIDIA PyTorch BERT checkpoint as a Hugging Face model directory",
        ConvertConfig,
        "bertbench.jobs.convert:run_convert",
        recorded=False,
    ),
    "export": Command(
        "write runs from the store in another tool's layout: `export mlperf` (MLPerf Inference's submission tree)",
        ExportConfig,
        "bertbench.jobs.export:run_export",
        recorded=False,
    ),
    "report": Command(
        "the KPI table from the results store (terminal, Markdown, CSV, JSON), --html with plots, --compare",
        ReportConfig,
        "bertbench.jobs.report:run_report",
        recorded=False,
    ),
    "results": Command(
        "manage the results store: `results import DIR` loads metrics.json files, `results merge STORE` other stores",
        ResultsConfig,
        "bertbench.jobs.results_store:run_results",
        recorded=False,
    ),
}

WORKLOAD_JOBS = tuple(name for name, command in COMMANDS.items() if command.in_workloads)


def config_from_namespace(command: str, args: argparse.Namespace, task: str | None) -> Any:
    """The config of `command` (and `task`) from parsed arguments."""
    entry = COMMANDS[command]
    if not entry.tasks:
        config = from_namespace(entry.config, args)
    elif task is None:
        config_class, _ = entry.standalone  # the parser requires a task when there is no standalone form
        config = from_namespace(config_class, args)
    else:
        options = from_namespace(TASKS[task].options_class, args)
        try:  # settings that cannot run (a window longer than BERT's positions, …) are a bad command line
            options.validate()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        config = from_namespace(entry.config, args, task=task, task_options=options)
    check_writes(config)  # no output is, or holds, an input: before anything is read or made
    return config


def config_from_options(
    command: str, task: str | None, options: dict[str, Any], ignorable: frozenset[str] = frozenset()
) -> Any:
    """The config a command line would give for `options` (a workload case's), checked by the same parsers,
    choices and bounds; OptionValueError names the option and the problem."""
    entry = COMMANDS[command]
    classes = [entry.config] + ([TASKS[task].options_class] if task else [])
    label = f"`bertbench {command}{' ' + task if task else ''}`"
    namespace = namespace_from_mapping(classes, options, ignorable=ignorable, label=label)
    try:
        return config_from_namespace(command, namespace, task)
    except UsageError as exc:  # a check across options (e.g. an option of another backend)
        raise OptionValueError(str(exc)) from None


def command_argv(command: str, task: str | None, config: Any) -> list[str]:
    """`bertbench` arguments that parse back into `config` (the inverse of config_from_namespace)."""
    argv = [command, *([task] if task else []), *to_argv(config)]
    if task and COMMANDS[command].tasks:
        argv += to_argv(config.task_options)
    return argv
