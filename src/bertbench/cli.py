"""Command line: parse into a command's config dataclass, call its job. Every command is callable in-process via
main(argv). Parsing imports no torch: jobs are imported only when one runs."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import NoReturn

from bertbench import __version__
from bertbench.cliargs import add_arguments
from bertbench.commands import COMMANDS, config_from_namespace
from bertbench.errors import BertbenchError, UsageError
from bertbench.lifetime import tether_from_environment
from bertbench.results.recording import recorded_run
from bertbench.tasks.registry import TASKS


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UsageError line instead of usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar, generated from the command table."""
    parser = _Parser(prog="bertbench", description="Fine-tune, pretrain, evaluate and benchmark BERT models.")
    parser.add_argument("--version", action="version", version=f"bertbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        if not command.tasks:
            add_arguments(sub, command.config)
            continue
        if command.standalone:
            add_arguments(sub, command.standalone[0])
        tasks = sub.add_subparsers(
            dest="task",
            required=command.standalone is None,
            parser_class=_Parser,
            metavar="{" + ",".join(command.tasks) + "}",
        )
        for task in command.tasks:
            task_parser = tasks.add_parser(task, help=f"{name} {task}", description=f"{command.help} ({task})")
            add_arguments(task_parser, command.config)
            add_arguments(task_parser, TASKS[task].options_class)
    return parser


def parse(argv: list[str] | None) -> tuple[str, str, object]:
    """(command name, the job to run as "module:function", its config) from a command line."""
    if argv is None:
        argv = sys.argv[1:]
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        raise UsageError("choose a command: " + ", ".join(COMMANDS) + " (bertbench --help)")
    args, extra = build_parser().parse_known_args(argv)
    _take_trailing_positionals(args, extra)
    command = COMMANDS[args.command]
    task = getattr(args, "task", None)
    job = command.standalone[1] if command.tasks and task is None and command.standalone else command.job
    return args.command, job, config_from_namespace(args.command, args, task)


def _take_trailing_positionals(args: argparse.Namespace, extra: list[str]) -> None:
    """Options in any order: argparse gives a list positional (`results merge STORE…`) only the values before the
    first option, so values after an option (`results merge --store D SRC`) join the list; anything else is the
    one-line error argparse would have given."""
    listed = getattr(args, "paths", None)
    if extra and isinstance(listed, list) and not any(item.startswith("-") for item in extra):
        listed.extend(Path(item) for item in extra)
    elif extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C (one line, nothing half-written, the run recorded as interrupted)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


TRACEBACK_ENV = "BERTBENCH_TRACEBACK"  # set to 1 to see the traceback of an internal error
INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in bertbench, never a verdict on the user's input


def _os_error_line(exc: OSError) -> str:
    """`PATH: reason` of a file-system error (both names of a rename)."""
    where = ": ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input ends with one line on stderr and a non-zero return code."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    tether_from_environment()
    created: Path | None = None
    try:
        command, job, config = parse(argv)
        created = _new_output_dir(config)
        module, function = job.split(":")
        run = getattr(importlib.import_module(module), function)
        if not COMMANDS[command].recorded or COMMANDS[command].only_looks(config):
            run(config)
        else:
            with recorded_run(command, config) as recorder:
                recorder.finished(run(config))
        created = None
    except BertbenchError as exc:
        print(f"bertbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("bertbench: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("bertbench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a path under a regular file, no permission: the environment's fault
        print(f"bertbench: error: {_os_error_line(exc)}", file=sys.stderr)
        return 1
    except RecursionError:
        print("bertbench: error: input nested too deeply to read", file=sys.stderr)
        return 1
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(
            f"bertbench: internal error: {type(exc).__name__}: {str(exc)[:300]} "
            f"(a bug: {TRACEBACK_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
    finally:
        _remove_if_empty(created)
    return 0


def _new_output_dir(config: object) -> Path | None:
    """The command's output directory if it does not exist yet (so that a failure can take it away again)."""
    path = getattr(config, "output_dir", None)
    if path is None or os.environ.get("RANK", "0") != "0":
        return None
    return None if Path(path).exists() else Path(path)


def _remove_if_empty(path: Path | None) -> None:
    """A failed command leaves no empty output directory behind (one it did not create is left alone)."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.rmdir()  # only succeeds when empty
