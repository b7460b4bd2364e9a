"""Atomic file and directory writes, and content hashing.

Results and checkpoints must never be half-written: everything is written to a temporary sibling and renamed
into place, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write a UTF-8 text file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write pretty-printed JSON (keys in insertion order, non-ASCII kept)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths show up in configs and metrics; store them as plain JSON values.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$|^\.(?P<old>.+)\.old-(?P<oldpid>\d+)$")


def temporary_writer(entry: str) -> int | None:
    """The pid of the process that made this temporary name (atomic_directory), None for other names."""
    match = TEMPORARY.match(entry)
    if match is None:
        return None
    return int(match.group("pid") or match.group("oldpid"))


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces `final` only when the block completes without error. The
    temporary names carry the writer's pid, so that what a killed writer left can be told apart and cleared."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            # Move the old directory aside first so that `final` is never missing while a reader looks.
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_not_evaluated(
    training: Sequence[str | Path], evaluated: Sequence[str | Path], training_flag: str, evaluated_flag: str
) -> None:
    """No evaluated file is a training file (compared by content): a score on the data a model learned from is no
    evaluation. One line naming both, before any work."""
    seen = {sha256_file(path): Path(path) for path in training if Path(path).is_file()}
    for path in evaluated:
        if Path(path).is_file() and sha256_file(path) in seen:
            raise BertbenchError(
                f"{path}: {evaluated_flag} is the {training_flag} file {seen[sha256_file(path)]}; a score on training "
                "data is no evaluation (hold some data out)"
            )
