"""One guard for every writer: for every command that writes, each of its inputs given as its output (three
spellings: as given, with a trailing slash and `..`, through a symlink), or an output folder that holds the input,
is one line and exit 2 before anything is read or made, whatever --overwrite says; the input is untouched. The
results store counts as an input whether it exists yet or not, and so does the default store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bertbench.cli import main
from bertbench.cliargs import CLI, READS, STORE, WRITES, flag_of, option_fields
from bertbench.commands import COMMANDS
from bertbench.results.store import ResultsStore

# One task per command that takes tasks: the guard reads the options, which do not depend on the task.
TASK = {"eval": "sst2", "bench": "sst2", "finetune": "sst2", "prune": "sst2"}
EXTRA = {"prune": ["--flops", "0.5"], "export": ["mlperf"], "results": ["merge"]}


def _declared(command: str) -> tuple[list[str], list[str]]:
    """The flags (or upper-case positional names) a command reads and writes, from its config's declarations."""
    reads, writes = [], []
    for field, _ in option_fields(COMMANDS[command].config):
        spec = field.metadata[CLI]
        name = field.name.upper() if spec.positional else flag_of(field)
        if spec.role in (READS, STORE):
            reads.append(name)
        elif spec.role == WRITES:
            writes.append(name)
    return reads, writes


WRITING = [name for name in COMMANDS if _declared(name)[1]]


def test_the_guard_covers_every_command_that_writes() -> None:
    assert set(WRITING) == {"eval", "bench", "finetune", "pretrain", "prune", "build-corpus", "report", "export"} | {
        "results",
        "convert",
    }


def _digest(path: Path) -> str:
    if path.is_dir():
        return ";".join(f"{p.relative_to(path)}:{_digest(p)}" for p in sorted(path.rglob("*")) if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inputs(tmp_path: Path) -> dict[str, Path]:
    """An existing thing for each kind of input: a model folder, a data file, a store."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "data.tsv"
    data.write_text("sentence\tlabel\nfine\t1\n")
    store = tmp_path / "store.sqlite"
    ResultsStore(store).start("eval", {})
    return {"model": model, "file": data, "store": store}


def _value(flag: str, inputs: dict[str, Path]) -> Path:
    if flag in ("--model", "--init-from", "SRC"):
        return inputs["model"]
    if flag in ("--store", "PATHS"):
        return inputs["store"]
    return inputs["file"]


def _spellings(path: Path, tmp_path: Path) -> list[str]:
    link = tmp_path / f"link-{path.name}"
    if not link.exists():
        link.symlink_to(path)
    return [str(path), os.path.relpath(path.parent / ".." / path.parent.name / path.name) + "/", str(link)]


def _argv(command: str, reads: list[str], values: dict[str, str], output: tuple[str, str]) -> list[str]:
    argv = [command, *([TASK[command]] if command in TASK else []), *EXTRA.get(command, [])]
    positional_at = len(argv)  # positional inputs (results merge's PATHS, convert's SRC) follow the sub-command
    flag, where = output
    if flag == "--export-dir":
        argv += ["--backend", "onnxruntime"]
    for name in reads:
        if name.isupper():
            argv.insert(positional_at, values[name])
        elif name != flag:
            argv += [name, values[name]]
    for other in _declared(command)[1]:  # every other output somewhere harmless
        if other != flag and other in ("--output-dir", "--output"):
            argv += [other, str(Path(where).parent / "elsewhere")]
    return [*argv, flag, where, *(["--overwrite"] if command not in ("results",) else [])]


@pytest.mark.parametrize("command", WRITING)
def test_no_command_writes_over_or_around_its_inputs(command: str, tmp_path: Path, capsys) -> None:
    inputs = _inputs(tmp_path)
    reads, writes = _declared(command)
    values = {name: str(_value(name, inputs)) for name in reads}
    before = {name: _digest(inputs[name]) for name in inputs}
    tried = 0
    for output in writes:
        for name in reads:
            source = Path(values[name])
            # the input given as the output, three ways; and an output folder that holds the input
            for where in [*_spellings(source, tmp_path), str(source.parent)]:
                code = main(_argv(command, reads, values, (output, where)))
                errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
                assert code == 2, (command, output, name, where, errors)
                assert len(errors) == 1 and f"{output} " in errors[0] and "an input" in errors[0], errors
                tried += 1
    assert tried >= 4
    assert {name: _digest(inputs[name]) for name in inputs} == before
    assert not (tmp_path / "elsewhere").exists()


def test_the_default_store_and_the_files_of_input_folders_are_inputs_too(tmp_path: Path, capsys) -> None:
    from bertbench.locations import default_store_path

    default = default_store_path()  # the session's (conftest points XDG_DATA_HOME at a temporary folder)
    assert main(["report", "--output", str(default), "--format", "csv", "--overwrite"]) == 2
    assert "--output is an input (--store" in capsys.readouterr().err
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    store = fleet / "a.sqlite"
    ResultsStore(store).start("eval", {})
    before = store.read_bytes()
    assert main(["report", "--store", str(fleet), "--output", str(store), "--format", "csv", "--overwrite"]) == 2
    assert "is a file of an input" in capsys.readouterr().err and store.read_bytes() == before
    # a store that does not exist yet is the store all the same: the same command is refused the first time too
    fresh = tmp_path / "out" / "results.sqlite"
    argv = ["eval", "sst2", "--model", "m", "--data", "d", "--output-dir", str(tmp_path / "out")]
    assert main([*argv, "--store", str(fresh)]) == 2
    assert "holds an input (--store" in capsys.readouterr().err and not (tmp_path / "out").exists()
