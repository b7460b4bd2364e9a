"""Calibration data for static INT8: a seeded sample of a *training* file's features, never the evaluated file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import sha256_file
from bertbench.models import WordPieceTokenizer
from bertbench.tasks.base import RowSubset, Task


def check_calibration_file(path: Path | None, evaluated: Path) -> dict[str, Any]:
    """The calibration file must exist and must not be the evaluated file; returns its facts for the record."""
    if path is None:
        raise BertbenchError(
            "--quantization static and --int8-fallback need --calibration-data FILE (training data, never the "
            "evaluated file)"
        )
    path = Path(path)
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    digest = sha256_file(path)
    if digest == sha256_file(evaluated):
        raise BertbenchError(f"{path}: calibration data is the evaluated file ({evaluated}); use training data")
    return {"calibration_data": str(path), "calibration_data_sha256": digest}


def calibration_sample(
    task: Task,
    tokenizer: WordPieceTokenizer,
    options: Any,
    cache: Cache,
    path: Path,
    samples: int,
    seed: int,
) -> RowSubset:
    """`samples` rows of `path`'s features, drawn without replacement from `seed` (kept in file order)."""
    full = task.load_eval_data(path, tokenizer, options, cache)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(full.num_samples, min(samples, full.num_samples), replace=False))
    return RowSubset(full, rows)
