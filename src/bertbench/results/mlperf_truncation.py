"""What MLCommons' `tools/submission/truncate_accuracy_log.py` does to an accuracy folder before a submission is
checked, done the same way (a test runs that script on a copy of the same tree and compares the bytes): the SHA-256
of the whole `mlperf_log_accuracy.json` appended to `accuracy.txt` as a `hash=` line, then the log cut to its first
and last 4,096 characters around a marker. (MLCommons' script also copies the whole log to a backup folder; here
the whole log stays where LoadGen wrote it, in the run's own folder.)"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

VIEWABLE_SIZE = 4096  # characters kept from each end
MAX_ACCURACY_LOG_SIZE = 10 * 1024  # what the checker takes as truncated
HASH_LINE = re.compile(r"^hash=([\w\d]+)$", re.MULTILINE)
LOG, TEXT = "mlperf_log_accuracy.json", "accuracy.txt"


def truncate_accuracy_folder(folder: Path) -> bool:
    """Hash and truncate `folder`'s accuracy log as MLCommons' script does; False when it already carries a hash and
    is small enough (the script skips it then too)."""
    log, text = folder / LOG, folder / TEXT
    if HASH_LINE.search(text.read_text(encoding="utf-8")) and log.stat().st_size < MAX_ACCURACY_LOG_SIZE:
        return False
    digest = hashlib.sha256(log.read_bytes()).hexdigest()
    with open(text, "a", encoding="utf-8") as handle:
        handle.write(f"\nhash={digest}\n")
    size = log.stat().st_size
    if size >= VIEWABLE_SIZE:
        content = log.read_bytes()  # LoadGen's JSON is ASCII: a character is a byte
        head, tail = content[:VIEWABLE_SIZE], content[size - VIEWABLE_SIZE :]
        log.write_bytes(head + b"\n\n...\n\n" + tail)
    return True
