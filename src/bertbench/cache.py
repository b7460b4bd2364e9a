"""One on-disk cache for built artifacts (features, exported models), keyed by everything they depend on.

An entry is a directory `ROOT/KIND/KEY/` written to a temporary name and renamed into place, with a
`manifest.json` of its files' SHA-256. An entry whose manifest does not describe exactly the files it holds, whose
files no longer match, or that cannot be read (a symlink, a loop) is rebuilt with a warning, never used; the
temporary folders of a writer that was killed are cleared the next time the kind is opened.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bertbench
from bertbench.console import warn
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_directory, atomic_write_json, sha256_file, sha256_text, temporary_writer
from bertbench.lifetime import still_running

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/bertbench`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bertbench"


class Cache:
    """Content-keyed directory cache with integrity checks."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        if self.root.exists() and not self.root.is_dir():
            raise BertbenchError(f"{self.root}: the cache directory is a file")
        self.rebuilt_corrupt = 0  # entries found corrupt and rebuilt during this process's life
        self._swept: set[str] = set()

    def key(self, kind: str, parts: dict[str, Any]) -> str:
        """Stable hash of the inputs an entry depends on (plus the bertbench version)."""
        blob = json.dumps({"kind": kind, "bertbench": bertbench.__version__, **parts}, sort_keys=True, default=str)
        return sha256_text(blob)[:32]

    def path(self, kind: str, parts: dict[str, Any]) -> Path:
        """Where the entry for these inputs lives (whether or not it exists yet)."""
        return self.root / kind / self.key(kind, parts)

    def get_or_build(self, kind: str, parts: dict[str, Any], build: Callable[[Path], None]) -> tuple[Path, bool]:
        """Return (entry directory, was_hit); `build(tmp_dir)` writes the entry's files on a miss."""
        final = self.path(kind, parts)
        self._sweep(kind)
        if self.is_valid(final):
            return final, True
        if os.path.lexists(final):
            warn(f"{final}: cache entry incomplete or unreadable; rebuilding it")
            self.rebuilt_corrupt += 1
            _remove(final)
        with atomic_directory(final) as tmp:
            build(tmp)
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            atomic_write_json(tmp / MANIFEST, {"kind": kind, "inputs": parts, "files": files})
        return final, False

    def _sweep(self, kind: str) -> None:
        """Clear the temporary folders that killed writers left under ROOT/KIND (once per kind and process)."""
        if kind in self._swept:
            return
        self._swept.add(kind)
        folder = self.root / kind
        for entry in folder.iterdir() if folder.is_dir() else []:
            writer = temporary_writer(entry.name)
            if writer is not None and writer != os.getpid() and not still_running(writer, None):
                _remove(entry)

    @staticmethod
    def is_valid(entry: Path) -> bool:
        """True when the entry is a real directory whose manifest lists exactly the files it holds (at least one),
        each with its recorded hash."""
        try:
            if entry.is_symlink() or not entry.is_dir():
                return False
            manifest = json.loads((entry / MANIFEST).read_text())
            files = manifest["files"]
            held = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file() or p.is_symlink()}
            if not isinstance(files, dict) or not files or held != {*files, MANIFEST}:
                return False
            return all(sha256_file(entry / name) == digest for name, digest in files.items())
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return False


def _remove(path: Path) -> None:
    """Remove a file, a symlink (not what it points to) or a directory tree; what cannot be removed is left."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
