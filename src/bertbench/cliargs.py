"""Command-line options declared once, on the config dataclasses that the jobs take.

A field made with `option(...)` carries its help text, choices, value parser and extra flags in its metadata;
`add_arguments(parser, cls)` turns every such field into an argparse option and `from_namespace(cls, args)`
builds the config back from the parsed namespace. Nested config dataclasses (`nested(...)`) are flattened onto
the same command line. Fields without `option` metadata are not on the command line. This module imports no
torch, so `bertbench --help` stays fast.
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

CLI = "bertbench.cli"
NESTED = "bertbench.nested"


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
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a command-line option."""
    spec = CliSpec(help, choices, parse, aliases, flag, positional, repeat, normalise, one_token)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={CLI: spec})
    return dataclasses.field(default=default, metadata={CLI: spec})


def nested(cls: type) -> Any:
    """A field holding another config dataclass whose options join this command line."""
    return dataclasses.field(default_factory=cls, metadata={NESTED: True})


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
    return values


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


def _flag(field: dataclasses.Field) -> str:
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


def _normaliser(spec: CliSpec, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    if not spec.normalise:
        return parse
    table = spec.normalise

    def normalised(text: str) -> Any:
        return parse(table.get(text, text))

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
                kwargs["nargs"] = "+"
            elif default is not dataclasses.MISSING:
                kwargs.update(nargs="?", default=default)
            if base is Path:
                kwargs["type"] = Path
            parser.add_argument(field.name, choices=choices, **kwargs)
            continue
        flags = [_flag(field), *spec.aliases]
        if base is bool:
            if default is True or default is None:  # None: "decided by another option" (--[no-]flag)
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["action"] = "store_true"
            parser.add_argument(*flags, dest=field.name, default=default, **kwargs)
            continue
        kwargs["type"] = _normaliser(spec, spec.parse or (base if base in (int, float, Path) else str))
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
                kwargs["help"] = f"{spec.help} (default: %(default)s)"
        parser.add_argument(*flags, dest=field.name, **kwargs)


def from_namespace(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """Build `cls` from parsed arguments; `overrides` set fields the command line does not carry."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif field.metadata.get(NESTED):
            values[field.name] = from_namespace(hints[field.name], args)
        elif CLI in field.metadata and hasattr(args, field.name):
            value = getattr(args, field.name)
            spec: CliSpec = field.metadata[CLI]
            if spec.repeat or typing.get_origin(hints[field.name]) is tuple:
                value = tuple(value or ())
            elif spec.normalise and isinstance(value, str):
                value = spec.normalise.get(value, value)
            values[field.name] = value
    return cls(**values)
