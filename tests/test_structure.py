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
    assert ort.runtime.providers == ("cpu",)
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
