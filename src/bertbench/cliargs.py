"""Command-line options declared once, on the config dataclasses that the jobs take.

A field made with `option(...)` carries its help text, choices, value parser and extra flags in its metadata;
`add_arguments(parser, cls)` turns every such field into an argparse option and `from_namespace(cls, args)`
builds the config back from the parsed namespace. Nested config dataclasses (`nested(...)`) are flattened onto
the same command line; a `chosen(...)` field holds the options of one of several alternatives, picked by another
field's value (`--backend`): every alternative's options are on the command line, the config holds the chosen
one's only, and an option of another alternative set away from its default is refused. Fields without `option`
metadata are not on the command line. This module imports no torch, so `bertbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bertbench.errors import UsageError
from bertbench.locations import default_store_path
from bertbench.names import name_problem

CLI = "bertbench.cli"
NESTED = "bertbench.nested"
CHOSEN = "bertbench.chosen"
# What a path option is to its command: READS a file or folder it reads, WRITES one it writes, STORE the results
# store it records into (never an output, never inside one, whether it exists yet or not; the default when not given).
READS, WRITES, STORE = "reads", "writes", "store"


@dataclasses.dataclass(frozen=True)
class CliSpec:
    """How one config field appears on the command line."""

    help: str
    choices: Sequence[str] | None = None
    parse: Callable[[str], Any] | None = None  # value parser; defaults to the field's type
    aliases: tuple[str, ...] = ()  # extra flags, e.g. ("--lr",)
    flag: str | None = None  # the flag when it is not --field-name (e.g. --precision for `amp`)
    positional: bool = False
    repeat: bool = False  # may be given several times (collected into a tuple)
    normalise: dict[str, str] | None = None  # alias values, e.g. {"ort": "onnxruntime"}
    one_token: bool = False  # a sequence given as one token ("1,8,32"), split by `parse`
    role: str | None = None  # READS: a file or folder the command reads; WRITES: one it writes (bertbench.writes)


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[str] | None = None,
    parse: Callable[[str], Any] | None = None,
    aliases: tuple[str, ...] = (),
    flag: str | None = None,
    positional: bool = False,
    repeat: bool = False,
    normalise: dict[str, str] | None = None,
    one_token: bool = False,
    role: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a command-line option (`role`: READS or WRITES for a path it names)."""
    spec = CliSpec(help, choices, parse, aliases, flag, positional, repeat, normalise, one_token, role)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={CLI: spec})
    return dataclasses.field(default=default, metadata={CLI: spec})


def nested(cls: type) -> Any:
    """A field holding another config dataclass whose options join this command line."""
    return dataclasses.field(default_factory=cls, metadata={NESTED: True})


@dataclasses.dataclass(frozen=True)
class Choice:
    """Which field picks the alternative (`backend`), and the options class of each of its values."""

    selector: str
    alternatives: dict[str, type]


def chosen(selector: str, alternatives: dict[str, type]) -> Any:
    """A field holding the options of the alternative that field `selector` names (None: its defaults, filled by
    the owner's __post_init__)."""
    return dataclasses.field(default=None, metadata={CHOSEN: Choice(selector, alternatives)})


# ---- value parsers: a bad value is an argparse error, which the CLI reports in one line with exit 2 ---------


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


MAX_BATCH_SIZE = 65536  # far above any micro-batch that fits a BERT in memory; larger batches use --grad-accum


def batch_size_value(text: str) -> int:
    """A batch size: 1 .. MAX_BATCH_SIZE."""
    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"{text} is above {MAX_BATCH_SIZE} (use --grad-accum for larger batches)")
    return value


MAX_THREADS = 1024
MAX_SEED = 2**63 - 1  # torch.manual_seed's range; numpy's generators take any non-negative integer


def thread_count(text: str) -> int:
    """A thread count: 1 .. MAX_THREADS."""
    value = positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text} threads is above {MAX_THREADS}")
    return value


def seed_value(text: str) -> int:
    """A random seed: 0 .. 2**63 - 1."""
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is not a seed in [0, 2**63 - 1]")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """ "1,8,32" -> (1, 8, 32), every value >= 1."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text}: every value must be a positive integer")
    return values


def batch_size_values(text: str) -> tuple[int, ...]:
    """positive_int_list whose values are batch sizes."""
    values = positive_int_list(text)
    if max(values) > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"{text}: a batch size is above {MAX_BATCH_SIZE}")
    if len(set(values)) != len(values):  # each batch size is one test with its own folder (bsN)
        raise argparse.ArgumentTypeError(f"{text}: a batch size is given twice")
    return values


def device_value(text: str) -> str:
    """A device: `cpu`, `cuda` or `cuda:N`."""
    kind, sep, index = text.partition(":")
    if (kind == "cpu" and not sep) or (kind == "cuda" and (not sep or index.isdigit())):
        return text
    raise argparse.ArgumentTypeError(f"{text} is not a device (cpu, cuda or cuda:N)")


def identifier(text: str) -> str:
    """A name that becomes part of a path (a system, a submitter): an identifier, never a path."""
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
    return text


def key_value(text: str) -> str:
    """KEY=VALUE with a non-empty key."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip() or " " in key:
        raise argparse.ArgumentTypeError(f"{text} is not KEY=VALUE")
    return text


def fraction(text: str) -> float:
    """A float in [0, 1]."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


# ---- dataclass <-> argparse -------------------------------------------------------------------------------


def flag_of(field: dataclasses.Field) -> str:
    """The option's flag on the command line (`--batch-size`, or the one its spec names)."""
    spec: CliSpec = field.metadata[CLI]
    return spec.flag or "--" + field.name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """int for `int | None`, Path for `list[Path]`, … (the type of one command-line value)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(inner[0])
    if origin in (list, tuple):
        return _base_type(typing.get_args(annotation)[0])
    return annotation


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin in (list, tuple)


def _normaliser(spec: CliSpec, parse: Callable[[str], Any], base: Any = str) -> Callable[[str], Any]:
    table = spec.normalise or {}
    kind = {int: "an integer", float: "a number"}.get(base, "a valid value")

    def normalised(text: str) -> Any:
        try:
            return parse(table.get(text, text))
        except (ValueError, TypeError):  # argparse would name the parser function ("invalid budget_value value")
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None

    return normalised


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_arguments(parser: argparse.ArgumentParser, cls: type, seen: set[str] | None = None) -> None:
    """Add an option for every `option` field of `cls` (and of its nested configs) to `parser`."""
    hints = typing.get_type_hints(cls)
    seen = set() if seen is None else seen
    for field in dataclasses.fields(cls):
        if field.metadata.get(NESTED):
            add_arguments(parser, hints[field.name], seen)
            continue
        if CHOSEN in field.metadata:
            for alternative in field.metadata[CHOSEN].alternatives.values():
                add_arguments(parser, alternative, seen)
            continue
        spec: CliSpec | None = field.metadata.get(CLI)
        if spec is None or field.name in seen:
            continue
        seen.add(field.name)
        annotation = hints[field.name]
        default = _default_of(field)
        kwargs: dict[str, Any] = {"help": spec.help}
        choices = list(spec.choices) if spec.choices else None
        if choices and spec.normalise:
            choices += [alias for alias in spec.normalise if alias not in choices]
        base = _base_type(annotation)
        if spec.positional:
            if _is_sequence(annotation):
                kwargs["nargs"] = "+" if default is dataclasses.MISSING else "*"
            elif default is not dataclasses.MISSING:
                kwargs.update(nargs="?", default=default)
            if base is Path:
                kwargs["type"] = Path
            parser.add_argument(field.name, choices=choices, **kwargs)
            continue
        flags = [flag_of(field), *spec.aliases]
        if base is bool:
            if default is True or default is None:  # None: "decided by another option" (--[no-]flag)
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["action"] = "store_true"
            parser.add_argument(*flags, dest=field.name, default=default, **kwargs)
            continue
        kwargs["type"] = _normaliser(spec, spec.parse or (base if base in (int, float, Path) else str), base)
        if choices:
            kwargs["choices"] = choices
            kwargs["metavar"] = "{" + ",".join(spec.choices or ()) + "}"
        if spec.repeat:
            kwargs["action"] = "append"
        elif _is_sequence(annotation) and not spec.one_token:
            kwargs["nargs"] = "+"
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = None if spec.repeat else default
            if default not in (None, (), []) and "%(default)" not in spec.help:
                # a sequence as a user types it ("32", "1,8,32"), not as Python prints it ("(32,)")
                shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else "%(default)s"
                kwargs["help"] = f"{spec.help} (default: {shown})"
        parser.add_argument(*flags, dest=field.name, **kwargs)


def _namespace_value(field: dataclasses.Field, annotation: Any, args: argparse.Namespace) -> Any:
    value = getattr(args, field.name)
    spec: CliSpec = field.metadata[CLI]
    if spec.repeat or typing.get_origin(annotation) is tuple:
        value = tuple(value or ())
    return value


def from_namespace(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build `cls` from parsed arguments; `overrides` set fields the command line does not carry."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif field.metadata.get(NESTED):
            values[field.name] = from_namespace(hints[field.name], args)
        elif CHOSEN in field.metadata:
            values[field.name] = _chosen_from_namespace(cls, field.metadata[CHOSEN], values, args)
        elif CLI in field.metadata and hasattr(args, field.name):
            values[field.name] = _namespace_value(field, hints[field.name], args)
    return cls(**values)


def _chosen_from_namespace(cls: type, choice: Choice, values: dict[str, Any], args: argparse.Namespace) -> Any:
    """The chosen alternative's options; an option only other alternatives take, set away from its default, is
    refused in one line (never silently ignored)."""
    selector = next(f for f in dataclasses.fields(cls) if f.name == choice.selector)
    picked = values.get(choice.selector, _default_of(selector))
    own_class = choice.alternatives[picked]
    own = {f.name for f in dataclasses.fields(own_class)}
    for name, alternative in choice.alternatives.items():
        hints = typing.get_type_hints(alternative)
        for field in dataclasses.fields(alternative):
            if name == picked or field.name in own or CLI not in field.metadata or not hasattr(args, field.name):
                continue
            if not _same(_namespace_value(field, hints[field.name], args), _default_of(field)):
                takers = " or ".join(
                    n
                    for n, alt in choice.alternatives.items()
                    if field.name in {f.name for f in dataclasses.fields(alt)}
                )
                flag = flag_of(selector)
                raise UsageError(f"{flag_of(field)}: an option of {flag} {takers}, not of {flag} {picked}")
    return from_namespace(own_class, args)


# ---- the same options from data (workload files) and back to a command line ------------------------------------


class OptionValueError(ValueError):
    """An option given as data (a workload's `options`) that the command line would refuse: the message names the
    option and the problem in one line (parse_option_value's message continues "option 'KEY' …")."""


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, annotation) of every command-line option of `cls` and of its nested configs, in command-line order
    (a name already seen is skipped, as add_arguments does)."""
    out: list[tuple[dataclasses.Field, Any]] = []
    seen: set[str] = set()

    def walk(kind: type) -> None:
        hints = typing.get_type_hints(kind)
        for field in dataclasses.fields(kind):
            if field.metadata.get(NESTED):
                walk(hints[field.name])
            elif CHOSEN in field.metadata:
                for alternative in field.metadata[CHOSEN].alternatives.values():
                    walk(alternative)
            elif CLI in field.metadata and field.name not in seen:
                seen.add(field.name)
                out.append((field, hints[field.name]))

    walk(cls)
    return out


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_one(flag: str, spec: CliSpec, base: Any, value: Any) -> Any:
    """One scalar value through the option's own parser and choices, as argparse would check it."""
    if isinstance(value, list | dict):
        raise OptionValueError(f"({flag}) takes one value, not a {type(value).__name__}")
    text = _as_text(value)
    parse = _normaliser(spec, spec.parse or (base if base in (int, float, Path) else str), base)
    try:
        parsed = parse(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise OptionValueError(f"({flag} {text}): {exc}") from None
    if spec.choices and parsed not in spec.choices:
        raise OptionValueError(f"({flag} {text}): invalid choice (choose from {', '.join(spec.choices)})")
    return parsed


def parse_option_value(field: dataclasses.Field, annotation: Any, value: Any) -> Any:
    """A value given as data (YAML: a string, number, boolean or list) -> what the command line would have parsed,
    with the same parsers, choices and bounds; OptionValueError otherwise."""
    spec: CliSpec = field.metadata[CLI]
    flag = flag_of(field)
    base = _base_type(annotation)
    if base is bool:
        if not isinstance(value, bool):
            raise OptionValueError(f"({flag}) is a switch: true or false, not {value!r}")
        return value
    if spec.one_token:
        text = ",".join(_as_text(v) for v in value) if isinstance(value, list) else value
        return _parse_one(flag, spec, base, text)
    if spec.repeat or _is_sequence(annotation):
        items = value if isinstance(value, list) else [value]
        if not items:
            raise OptionValueError(f"({flag}) is an empty list")
        parsed = [_parse_one(flag, spec, base, item) for item in items]
        return tuple(parsed) if spec.repeat or typing.get_origin(annotation) is tuple else parsed
    return _parse_one(flag, spec, base, value)


def namespace_from_mapping(
    classes: Sequence[type], values: dict[str, Any], *, ignorable: frozenset[str] = frozenset(), label: str = "it"
) -> argparse.Namespace:
    """What parsing a command line would give for `values` (keys: option names, `_` or `-` spelling), checked
    against the options of `classes` (a command's config and its task's options) exactly as the command line
    checks them. Keys in `ignorable` that no class takes are dropped; any other unknown key, a bad value or a
    missing required option raises OptionValueError naming the key (`label` names the command)."""
    table: dict[str, tuple[dataclasses.Field, Any]] = {}
    for cls in classes:
        for field, annotation in option_fields(cls):
            spec: CliSpec = field.metadata[CLI]
            if spec.positional:
                continue
            for flag in (flag_of(field), *spec.aliases):
                table.setdefault(flag, (field, annotation))
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        flag = "--" + str(key).replace("_", "-")
        if str(key).startswith("-") or flag not in table:
            if key in ignorable:
                continue
            raise OptionValueError(f"option '{key}' is not an option of {label}")
        field, annotation = table[flag]
        try:
            parsed[field.name] = parse_option_value(field, annotation, value)
        except OptionValueError as exc:
            raise OptionValueError(f"option '{key}' {exc}") from None
    for field, _ in (pair for cls in classes for pair in option_fields(cls)):
        required = _default_of(field) is dataclasses.MISSING and not field.metadata[CLI].positional
        if required and field.name not in parsed:
            raise OptionValueError(f"option '{field.name}' ({flag_of(field)}) is required by {label}")
    return argparse.Namespace(**parsed)


def _value_argv(flag: str, value: Any) -> list[str]:
    """`--flag value`, or `--flag=value` when the value looks like an option (argparse would take it for one)."""
    text = _as_text(value)
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]


def to_argv(config: Any) -> list[str]:
    """The command-line arguments that parse back into `config`: positionals first, then every option whose value
    differs from its default (the inverse of add_arguments + from_namespace)."""
    positionals: list[str] = []
    options: list[str] = []
    values = _flat_values(config)
    for field, annotation in option_fields(type(config)):
        spec: CliSpec = field.metadata[CLI]
        value = values[field.name]
        default = _default_of(field)
        if spec.positional:
            positionals += [_as_text(v) for v in value] if isinstance(value, list | tuple) else [_as_text(value)]
            continue
        if default is not dataclasses.MISSING and _same(value, default):
            continue
        flag = flag_of(field)
        if _base_type(annotation) is bool:
            if value is True:
                options.append(flag)
            elif value is False:  # away from a default of True or None: only the --no- form says it
                options.append("--no-" + flag[2:])
            continue
        if spec.one_token:
            options += _value_argv(flag, ",".join(_as_text(v) for v in value))
        elif spec.repeat:
            for item in value:
                options += _value_argv(flag, item)
        elif _is_sequence(annotation):
            items = [_as_text(v) for v in value]
            if any(item.startswith("-") for item in items):
                raise OptionValueError(f"{flag}: a value starting with '-' cannot follow it on a command line")
            options += [flag, *items]
        else:
            options += _value_argv(flag, value)
    return positionals + options


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return list(value) == list(default)
    return bool(value == default)


def _flat_values(config: Any) -> dict[str, Any]:
    """field name -> value over `config` and its nested configs. A name that several nested configs share (one flag
    on the command line) takes the value that is away from its default, if any."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if CHOSEN in field.metadata:  # the chosen alternative's values; the others' options stay at their defaults
            own = _flat_values(value)
            for alternative in field.metadata[CHOSEN].alternatives.values():
                for option_field, _ in option_fields(alternative):
                    own.setdefault(option_field.name, _default_of(option_field))
            for name, inner in own.items():
                out.setdefault(name, inner)
        elif field.metadata.get(NESTED):
            for name, inner in _flat_values(value).items():
                if name not in out or (not _same(inner, out[name]) and _is_default_of(value, name, out[name])):
                    out[name] = inner
        elif CLI in field.metadata:
            out.setdefault(field.name, value)
    return out


def _is_default_of(config: Any, name: str, value: Any) -> bool:
    """Whether `value` is the default of the field `name` of `config`'s class (an option left as it was)."""
    for field in dataclasses.fields(config):
        if field.name == name:
            default = _default_of(field)
            return default is not dataclasses.MISSING and _same(value, default)
    return True


def role_paths(config: Any, role: str) -> list[tuple[str, Path]]:
    """(flag, path) of every path the options of `config` (and its nested and chosen configs) name in `role`."""
    found: list[tuple[str, Path]] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.metadata.get(NESTED) or CHOSEN in field.metadata:
            if value is not None:
                found += role_paths(value, role)
            continue
        spec: CliSpec | None = field.metadata.get(CLI)
        if spec is None or spec.role != role:
            continue
        if role == STORE and not value:
            value = default_store_path()
        if value is None:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            found.append((flag_of(field) if not spec.positional else field.name.upper(), Path(str(item))))
    return found
