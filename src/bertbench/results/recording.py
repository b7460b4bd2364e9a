"""Every command's run becomes a row of the results store: `running` when it starts, then finished (with its
records), failed (with the one-line reason) or interrupted. `bertbench run` creates the row of each case itself
and passes its uid down (BERTBENCH_RUN_UID), so that a case that dies without a word is still accounted for."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bertbench.errors import BertbenchError
from bertbench.results.record import RunRecord
from bertbench.results.store import ResultsStore

RUN_UID_ENV = "BERTBENCH_RUN_UID"


def _is_main_rank() -> bool:
    # Under torchrun only rank 0 records (the other ranks return no record).
    return os.environ.get("RANK", "0") == "0"


def _as_records(result: Any) -> list[RunRecord]:
    if isinstance(result, RunRecord):
        return [result]
    if isinstance(result, list):
        return [r for r in result if isinstance(r, RunRecord)]
    return []


class Recorder:
    """The row of one command's run."""

    def __init__(self, store: ResultsStore | None, uid: str | None, output_dir: str | None) -> None:
        self.store, self.uid, self.output_dir = store, uid, output_dir

    def finished(self, result: Any) -> None:
        """The job returned: its records become the row."""
        if self.store and self.uid:
            self.store.finish(self.uid, _as_records(result), self.output_dir)

    def failed(self, exc: BaseException, status: str = "failed") -> None:
        """The job ended with an error (records written before it, e.g. --strict, are kept)."""
        if not (self.store and self.uid):
            return
        records = getattr(exc, "records", None)
        if records:
            self.store.finish(self.uid, records, self.output_dir)
        self.store.end(self.uid, status, str(exc) or type(exc).__name__)


@contextmanager
def recorded_run(command: str, config: Any) -> Iterator[Recorder]:
    """A store row around one command (rank 0 only; commands without a store option record nothing)."""
    if not hasattr(config, "store") or not _is_main_rank():
        yield Recorder(None, None, None)
        return
    store = ResultsStore(config.store)
    output_dir = getattr(config, "output_dir", None)
    output_dir = str(output_dir) if output_dir is not None else None
    asked = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    uid = os.environ.get(RUN_UID_ENV)
    if uid is None or store.get(uid) is None:
        uid = store.start(command, asked, output_dir, uid=uid)
    recorder = Recorder(store, uid, output_dir)
    try:
        yield recorder
    except BertbenchError as exc:
        recorder.failed(exc)
        raise
    except KeyboardInterrupt as exc:
        recorder.failed(exc, "interrupted")
        raise
    except Exception as exc:
        recorder.failed(exc)
        raise
