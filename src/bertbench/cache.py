"""One on-disk cache for built artifacts (features, exported models), keyed by everything they depend on.

An entry is a directory `ROOT/KIND/KEY/` written to a temporary name and renamed into place, with a
`manifest.json` of its files' SHA-256; an entry whose files no longer match is rebuilt, never used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bertbench
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_directory, atomic_write_json, sha256_file, sha256_text

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
        if self.is_valid(final):
            return final, True
        if final.exists():
            self.rebuilt_corrupt += 1
            shutil.rmtree(final, ignore_errors=True)
        with atomic_directory(final) as tmp:
            build(tmp)
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            atomic_write_json(tmp / MANIFEST, {"kind": kind, "inputs": parts, "files": files})
        return final, False

    @staticmethod
    def is_valid(entry: Path) -> bool:
        """True when the entry's manifest exists and every file in it has its recorded hash."""
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            return all(sha256_file(entry / name) == digest for name, digest in manifest["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            return False
