"""The shape of the code: no import circles, a command line that parses without torch, one source for options,
records that refuse colliding keys."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bertbench.cli import COMMANDS, parse
from bertbench.errors import UsageError
from bertbench.results.record import RecordKeyCollision, RunRecord

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> bertbench modules it imports (at any depth of the file, lazily or not)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                # `from a.b import c` names module a.b.c when it exists, else a.b
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("bertbench") and target != name:
                    graph[name].add(target)
    return graph


def test_the_import_graph_has_no_circle() -> None:
    graph = _import_graph()
    assert len(graph) > 40
    visiting, done, circles = set(), set(), []

    def visit(node: str, stack: list[str]) -> None:
        visiting.add(node)
        for nxt in sorted(graph[node]):
            # A package importing its own submodules (an __init__ re-exporting) is not a circle of logic.
            if nxt.startswith(node + "."):
                continue
            if nxt in visiting:
                circles.append([*stack[stack.index(nxt) :], nxt] if nxt in stack else [node, nxt])
            elif nxt not in done:
                visit(nxt, [*stack, nxt])
        visiting.discard(node)
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert circles == []


# The packages and modules of bertbench from the bottom up. A module may import its own unit (package or module) and
# units of lower layers only: never a unit above it, nor another unit of its own layer.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "choices", "names", "locations"),  # words every layer speaks; identifiers; default places
    ("bertbench", "hardware", "io_utils", "cliargs", "console", "progress", "lifetime", "holds"),  # machine, files
    ("cache", "locking", "launcher", "writes"),  # artifacts; one writer at a time; processes; no output over an input
    ("models",),  # BERT and its heads: no data, no devices
    ("tasks",),  # text -> features, outputs -> metrics: no runtime
    ("runtimes", "training", "calibration", "pruning"),  # infer / train / calibrate / prune: no timing
    ("bench",),  # the timing harness: batches, LoadGen, instances, roof
    ("evaluation",),  # features through a runtime, scored
    ("accuracy",),  # the guard against FP32
    ("results",),  # records, the store, renderers
    ("configs",),  # each command's options
    ("commands",),  # the command table
    ("workloads",),  # workload files and their plans
    ("jobs",),  # one module per command
    ("cli",),  # the front end
    ("__main__",),  # python -m bertbench
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a unit of the same or a higher layer (undeclared units are an error of their own)."""
    layer_of = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    undeclared = sorted({_unit(m) for m in graph} - set(layer_of))
    assert undeclared == [], f"declare the layer of {undeclared} in LAYERS"
    return [
        f"{source} -> {target}"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if _unit(source) != _unit(target) and layer_of[_unit(target)] >= layer_of[_unit(source)]
    ]


def test_imports_never_run_up_the_layers() -> None:
    assert _upward(_import_graph()) == []


def test_the_layer_check_sees_upward_and_sideways_imports() -> None:
    graph = _import_graph()
    graph["bertbench.runtimes.torch_runtime"] = graph["bertbench.runtimes.torch_runtime"] | {
        "bertbench.results.console",  # up: a runtime printing through the results package
        "bertbench.training.distributed",  # sideways: another unit of the same layer
    }
    graph["bertbench.models.bert"] = graph["bertbench.models.bert"] | {"bertbench.models.config"}  # its own unit
    assert _upward(graph) == [
        "bertbench.runtimes.torch_runtime -> bertbench.results.console",
        "bertbench.runtimes.torch_runtime -> bertbench.training.distributed",
    ]


def _help_commands() -> list[list[str]]:
    commands = [["--help"]]
    for name, command in COMMANDS.items():
        commands.append([name, "--help"])
        commands += [[name, task, "--help"] for task in command.tasks]
    return commands


def test_help_of_every_command_imports_neither_torch_nor_onnxruntime() -> None:
    script = (
        "import sys\n"
        "from bertbench.cli import main\n"
        f"for argv in {_help_commands()!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, argv\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "--doc-stride" in proc.stdout and "--whole-word-masking" in proc.stdout  # task options reach the help


def test_defaults_and_choices_come_from_the_config_dataclasses() -> None:
    base = ["--model", "m", "--output-dir", "o"]
    _, _, squad = parse(["eval", "squad", *base, "--data", "d"])
    _, _, sst2 = parse(["eval", "sst2", *base, "--data", "d"])
    assert squad.task_options.max_seq_length == 384 and sst2.task_options.max_seq_length == 128
    assert squad.runtime.backend == "torch" and squad.runtime.per_channel is True
    _, _, ort = parse(
        ["eval", "squad", *base, "--data", "d", "--backend", "ort", "--no-per-channel", "--provider", "cpu"]
    )
    assert ort.runtime.backend == "onnxruntime" and ort.runtime.per_channel is False
    assert ort.runtime.own.providers == ("cpu",)
    _, _, finetune = parse(["finetune", "squad", *base, "--train", "t", "--lr", "3e-5"])
    _, _, pretrain = parse(["pretrain", *base, "--corpus", "a", "b"])
    assert finetune.training.learning_rate == 3e-5 and finetune.training.optimizer == "adamw"
    assert pretrain.training.optimizer == "lamb" and pretrain.training.learning_rate == 1e-3
    assert [str(p) for p in pretrain.corpus] == ["a", "b"] and pretrain.task_options.max_seq_length == 128
    # an option of another task is refused, not silently ignored
    with pytest.raises(UsageError, match="--doc-stride"):
        parse(["eval", "sst2", *base, "--data", "d", "--doc-stride", "64"])
    for bad in (["--learning-rate", "nan"], ["--dropout", "2"], ["--warmup-ratio", "2"]):
        with pytest.raises(UsageError, match=bad[0]):
            parse(["finetune", "squad", *base, "--train", "t", *bad])


def test_a_record_refuses_a_key_two_sections_set() -> None:
    record = RunRecord("eval", {"batch_size": 32}, {"throughput": 1.0}, environment={"git_sha": "x"})
    flat = record.flat()
    assert flat["batch_size"] == 32 and flat["command"] == "eval" and flat["schema_version"] == 1
    with pytest.raises(RecordKeyCollision, match="batch_size"):
        RunRecord("eval", {"batch_size": 32}, {"batch_size": 8}, environment={}).flat()
    nan = RunRecord("eval", {}, {"f1": float("nan"), "curve": [float("inf"), 1.0]}, environment={}).flat()
    assert nan["f1"] is None and nan["curve"] == [None, 1.0]


@pytest.mark.parametrize(
    ("backend", "extra", "taker"),
    [
        ("openvino", ["--compile"], "--compile: an option of --backend torch"),
        ("torch", ["--int8-weights", "u8"], "--int8-weights: an option of --backend onnxruntime"),
        ("torch", ["--reduce-range"], "--reduce-range: an option of --backend onnxruntime or openvino"),
        ("onnxruntime", ["--compile"], "--compile: an option of --backend torch"),
        ("null", ["--provider", "cpu"], "--provider: an option of --backend onnxruntime"),
        ("openvino", ["--calibration-method", "entropy"], "--calibration-method: an option of --backend onnxruntime"),
    ],
)
def test_an_option_of_another_backend_is_refused_when_parsed(backend: str, extra: list[str], taker: str) -> None:
    base = ["eval", "squad", "--model", "m", "--output-dir", "o", "--data", "d", "--backend", backend]
    with pytest.raises(UsageError, match=taker) as refused:
        parse([*base, *extra])
    assert f"not of --backend {backend}" in str(refused.value)


def test_each_backend_reads_its_own_options() -> None:
    base = ["eval", "squad", "--model", "m", "--output-dir", "o", "--data", "d"]
    _, _, ov = parse([*base, "--backend", "ov", "--reduce-range", "--export-dir", "x"])
    assert ov.runtime.own.reduce_range is True and str(ov.runtime.own.export_dir) == "x"
    _, _, ort = parse([*base, "--backend", "ort", "--reduce-range", "--int8-weights", "u8", "--provider", "cpu"])
    own = ort.runtime.own
    assert own.reduce_range is True and own.int8_weights == "u8" and own.providers == ("cpu",)
    assert own.int8_attention("dynamic") is True and own.int8_attention("static") is False
    _, _, compiled = parse([*base, "--compile"])
    assert compiled.runtime.own.compile is True and compiled.runtime.backend == "torch"
