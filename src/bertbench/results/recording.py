"""Every command's run becomes a row of the results store: `running` when it starts, then finished (with its
records), failed (with the one-line reason) or interrupted. `bertbench run` creates the row of each case itself
and passes its uid down (BERTBENCH_RUN_UID), so that a case that dies without a word is still accounted for; the
case claims the row (its host, pid and start time), so that a row whose process is gone is found out later.

A result is never stranded: when the store stays locked, the records wait beside it and are imported the next
time it is opened (`ResultsStore.keep_pending`). With a tracking server asked for (--mlflow-uri or
MLFLOW_TRACKING_URI) the ended row is also logged there; a server that does not take it costs one warning, and the
row waits for `bertbench results push`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertbench.console import warn
from bertbench.errors import BertbenchError
from bertbench.results.record import RUN_UID_ENV, RunRecord
from bertbench.results.store import ResultsStore, StoreBusy
from bertbench.results.tracking import PARENT_ENV, TrackingUnavailable, push_row, tracking_uri


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

    def __init__(
        self, store: ResultsStore | None, uid: str | None, output_dir: str | None, tracking: str | None = None
    ) -> None:
        self.store, self.uid, self.output_dir, self.tracking = store, uid, output_dir, tracking

    def finished(self, result: Any) -> None:
        """The job returned: its records become the row (or wait beside a locked store)."""
        if self.store and self.uid and self._finish(_as_records(result)):
            self._track()

    def _finish(self, records: list[RunRecord]) -> bool:
        try:
            self.store.finish(self.uid, records, self.output_dir)
        except StoreBusy as exc:
            kept = self.store.keep_pending(self.uid, records, self.output_dir)
            warn(f"{exc}; the result waits in {kept} and enters the store the next time it is opened")
            return False
        return True

    def _track(self) -> None:
        """Log the ended row to the tracking server; when it does not take it, say so once and keep it for later."""
        if not (self.store and self.uid and self.tracking):
            return
        try:
            self.store.set_tracking(self.uid, {"uri": self.tracking, "parent": os.environ.get(PARENT_ENV) or None})
            push_row(self.store, self.uid)
        except TrackingUnavailable as exc:
            warn(f"not logged to MLflow ({exc}); the run is kept for `bertbench results push`")
        except StoreBusy as exc:
            warn(f"{exc}; not logged to MLflow")

    def failed(self, exc: BaseException, status: str = "failed") -> None:
        """The job ended with an error (records written before it, e.g. --strict, are kept)."""
        if not (self.store and self.uid):
            return
        records = getattr(exc, "records", None)
        if records:
            self._finish(records)
        try:
            self.store.end(self.uid, status, str(exc) or type(exc).__name__)
        except StoreBusy:
            warn(f"{self.store.path}: busy; run {self.uid} is marked interrupted the next time the store is opened")
            return
        self._track()


@contextmanager
def recorded_run(command: str, config: Any) -> Iterator[Recorder]:
    """A store row around one command (rank 0 only; commands without a store option record nothing)."""
    if not hasattr(config, "store") or not _is_main_rank():
        yield Recorder(None, None, None)
        return
    store = ResultsStore(config.store)
    output_dir = getattr(config, "output_dir", None)
    # absolute: the store is read from other folders (export, results push, report) and other machines' merges
    output_dir = str(Path(output_dir).resolve()) if output_dir is not None else None
    asked = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    given = os.environ.get(RUN_UID_ENV)
    if given is not None and store.get(given) is not None:
        uid = given
        store.claim(uid)
    else:
        uid = store.start(command, asked, output_dir, uid=given)
    recorder = Recorder(store, uid, output_dir, tracking_uri(getattr(config, "mlflow_uri", None)))
    os.environ[RUN_UID_ENV] = uid  # every record the job makes names its row (run_uid)
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
    finally:
        if given is None:
            os.environ.pop(RUN_UID_ENV, None)
        else:
            os.environ[RUN_UID_ENV] = given
