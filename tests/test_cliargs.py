"""Options declared once: the command line, workload options (data) and command lines written back (`to_argv`) all
go through the config dataclasses, with the same parsers, choices and bounds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bertbench.cli import parse
from bertbench.cliargs import CLI, NESTED, OptionValueError, option_fields, parse_option_value, to_argv
from bertbench.commands import COMMANDS, command_argv, config_from_options
from bertbench.configs import ExportConfig, ResultsConfig, RunConfig
from bertbench.runtimes.options import BACKEND_OPTIONS, RuntimeOptions
from bertbench.tasks.registry import TASKS

# Values tried, in order, for an option of each kind until one parses; negative numbers come first so that the
# `--flag=-1.5` form of the command line is exercised too.
FLOATS = (-1.5, 0.5, 0.25, 2.0)
INTS = (3, 2, 64)


# Values that satisfy the checks across options (a window must hold a question and some context; the store is never
# the output folder).
TASK_VALUES = {"max_seq_length": [256], "doc_stride": [64], "max_query_length": [32], "store": ["s.sqlite"]}


def _candidates(field: dataclasses.Field, annotation: Any) -> list[Any]:
    if field.name in TASK_VALUES:
        return TASK_VALUES[field.name]
    spec = field.metadata[CLI]
    default = field.default if field.default is not dataclasses.MISSING else None
    text = str(annotation)
    if "bool" in text:
        return [True] if default in (False, None) else [False]
    if spec.choices:
        others = [c for c in spec.choices if c != default]
        return [[others[0]]] if spec.repeat else others
    if spec.one_token:
        return [[1, 8]]
    if spec.repeat:
        return [["A=1", "B=-2"]]
    if "list" in text:
        return [["a.txt", "b.txt"]]
    if "float" in text:
        return list(FLOATS)
    if "int" in text:
        return [v for v in INTS if v != default]
    return ["some/where"]


def _backend_fields() -> dict[str, set[str]]:
    """option name -> the backends that take it (options every backend shares are not listed)."""
    owners: dict[str, set[str]] = {}
    for backend, kind in BACKEND_OPTIONS.items():
        for item in dataclasses.fields(kind):
            owners.setdefault(item.name, set()).add(backend)
    return owners


def _non_default_options(command: str, task: str | None, backend: str) -> dict[str, Any]:
    """A value away from its default for every option of the command that parses, on `backend`."""
    classes = [COMMANDS[command].config] + ([TASKS[task].options_class] if task else [])
    only = _backend_fields()
    options: dict[str, Any] = {}
    for cls in classes:
        for field, annotation in option_fields(cls):
            if field.metadata[CLI].positional or backend not in only.get(field.name, {backend}):
                continue
            if field.name == "backend":
                options["backend"] = backend
                continue
            for value in _candidates(field, annotation):
                try:
                    parse_option_value(field, annotation, value)
                except OptionValueError:
                    continue
                options[field.metadata[CLI].flag[2:] if field.metadata[CLI].flag else field.name] = value
                break
    if command in ("eval", "bench"):  # a path the backend can run (an impossible one is refused when parsed)
        options.update(RUNNABLE_INT8[backend])
        options = {k: v for k, v in options.items() if v is not None}
    if command == "prune":  # one budget, the latency one (its options then count), measured on a runnable path
        options.pop("flops", None)
        options.update({"latency_backend": "onnxruntime", "latency_precision": "int8"})
    return options


# INT8 each backend runs (every other option is away from its default): static needs --calibration-data, which
# the generator sets; torch's INT8 is dynamic only (its default).
RUNNABLE_INT8: dict[str, dict[str, Any]] = {
    "onnxruntime": {"precision": "int8", "quantization": "static"},
    "torch": {"precision": "int8", "quantization": None},
}


def _command_tasks() -> list[tuple[str, str | None]]:
    pairs = []
    for name, command in COMMANDS.items():
        if any(field.metadata[CLI].positional for field, _ in option_fields(command.config)):
            continue  # positionals: see the test below
        pairs += [(name, task) for task in command.tasks] if command.tasks else [(name, None)]
    return pairs


def _runnable(backend: str, task: str | None) -> bool:
    tasks = BACKEND_OPTIONS[backend].ACCEPTS.tasks
    return tasks is None or task is None or task in tasks


@pytest.mark.parametrize(
    ("command", "task", "backend"),
    [(c, t, b) for c, t in _command_tasks() for b in ("onnxruntime", "torch") if _runnable(b, t)],
)
def test_every_option_survives_config_to_argv_to_config(command: str, task: str | None, backend: str) -> None:
    options = _non_default_options(command, task, backend)
    for required in ("model", "data", "output_dir", "train", "corpus", "output"):
        options.setdefault(required, ["c.txt"] if required == "corpus" else "x")
    options = {k: v for k, v in options.items() if k in _all_names(command, task)}
    if "max_duration" in options:
        options["max_duration"] = 36000.0  # room for the minimum duration the other values ask (MLPerf's 600 s)
    config = config_from_options(command, task, options)
    argv = command_argv(command, task, config)
    parsed_command, _, parsed = parse(argv)
    assert parsed_command == command and parsed == config
    assert len(options) >= 3  # the generator found values for the options (not a vacuous round trip)


def _all_names(command: str, task: str | None) -> set[str]:
    classes = [COMMANDS[command].config] + ([TASKS[task].options_class] if task else [])
    names = set()
    for cls in classes:
        for field, _ in option_fields(cls):
            spec = field.metadata[CLI]
            names.add(spec.flag[2:] if spec.flag else field.name)
    return names


def test_positionals_and_option_like_values_round_trip() -> None:
    run = RunConfig(workload="mine.yaml", select="-int8", force=True, output_root=Path("out"))
    argv = ["run", *to_argv(run)]
    assert "-k=-int8" in argv and argv[1] == "mine.yaml"
    assert parse(argv)[2] == run
    results = ResultsConfig(action="import", paths=[Path("a"), Path("b")])
    assert parse(["results", *to_argv(results)])[2] == results
    export = ExportConfig(format="mlperf", output=Path("out"), division="closed", where=("precision=int8",))
    assert parse(["export", *to_argv(export)])[2] == export


def test_options_of_a_nested_config_are_flattened_once() -> None:
    names = [field.name for field, _ in option_fields(RuntimeOptions)]
    assert names.count("reduce_range") == 1 and names.count("export_dir") == 1
    assert "compile" in names and "providers" in names and "keep_fp32" not in names
    assert all(not field.metadata.get(NESTED) for field, _ in option_fields(RuntimeOptions))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "int4"}, "option 'precision' (--precision int4): invalid choice"),
        ({"batch_size": 0}, "option 'batch_size' (--batch-size 0): 0 is not a positive integer"),
        ({"batch_size": [8, 16]}, "option 'batch_size' (--batch-size) takes one value, not a list"),
        ({"accuracy_target": 1.5}, "1.5 is not between 0 and 1"),
        ({"strict": "yes"}, "option 'strict' (--strict) is a switch: true or false, not 'yes'"),
        ({"frobnicate": 1}, "option 'frobnicate' is not an option of `bertbench eval sst2`"),
        ({"doc_stride": 64}, "option 'doc_stride' is not an option of `bertbench eval sst2`"),
        ({"int8_weights": "u8"}, "--int8-weights: an option of --backend onnxruntime, not of --backend torch"),
        ({"data": None}, "option 'data' (--data) is required by `bertbench eval sst2`"),
    ],
)
def test_workload_options_are_checked_by_the_config_classes(options: dict[str, Any], message: str) -> None:
    base = {"model": "m", "data": "d.tsv", "output_dir": "o"}
    merged = {k: v for k, v in {**base, **options}.items() if v is not None}
    with pytest.raises(OptionValueError) as refused:
        config_from_options("eval", "sst2", merged)
    assert message in str(refused.value)


def test_workload_options_take_both_spellings_aliases_and_defaults_where_they_apply() -> None:
    config = config_from_options(
        "finetune",
        "squad",
        {"model": "m", "train": "t.json", "output-dir": "o", "lr": 3e-5, "precision": "bf16", "doc-stride": 64},
    )
    assert config.training.learning_rate == 3e-5 and config.training.amp == "bf16"
    assert config.task_options.doc_stride == 64 and str(config.output_dir) == "o"
    # a workload default a job does not take is dropped for that job, not an error
    bench = config_from_options(
        "bench", "sst2", {"model": "m", "data": "d", "output_dir": "o", "train": "t"}, ignorable=frozenset({"train"})
    )
    assert bench.batch_size == (32,)
    ov = config_from_options("eval", "squad", {"model": "m", "data": "d", "output_dir": "o", "backend": "ov"})
    assert ov.runtime.backend == "openvino"
