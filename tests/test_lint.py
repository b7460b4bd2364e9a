"""The code base stays ruff clean (part of the default suite so CI enforces it)."""

import shutil
import subprocess
import sys

from .conftest import REPO


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff") or f"{sys.prefix}/bin/ruff"
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
