"""One guard for every writer: what a command writes (declared on its options as WRITES) never is, and never
holds, what it reads (READS: model, data, corpus, …) or its results store (STORE, the default one when --store is
not given), nor overwrites a file inside an input folder (a store of a folder of stores, a model's config.json),
whatever --overwrite says. Paths are compared resolved (symlinks, `..`, trailing slashes), before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertbench.cliargs import READS, STORE, WRITES, role_paths
from bertbench.errors import UsageError


def _resolved(path: Path) -> Path:
    return path.expanduser().resolve()


def check_writes(config: Any) -> None:
    """Refuse, in one line (exit 2), an output that is or holds one of the command's inputs or its results store,
    or that is a file inside an input folder."""
    inputs = [(flag, path, _resolved(path)) for flag, path in role_paths(config, READS) if path.exists()]
    inputs += [(flag, path, _resolved(path)) for flag, path in role_paths(config, STORE)]  # there or not yet
    for out_flag, output in role_paths(config, WRITES):
        target = _resolved(output)
        for in_flag, given, source in inputs:
            if target == source:
                raise UsageError(
                    f"{output}: {out_flag} is an input ({in_flag} {given}); a command never writes over it"
                )
            if target in source.parents:
                raise UsageError(
                    f"{output}: {out_flag} holds an input ({in_flag} {given}); a command never writes where it lies"
                )
            if source.is_dir() and source in target.parents and target.is_file():
                raise UsageError(
                    f"{output}: {out_flag} is a file of an input ({in_flag} {given}); a command never writes over it"
                )
