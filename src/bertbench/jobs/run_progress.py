"""What `bertbench run` says while its cases work: the running case, its own progress as the case reports it through
the progress channel (training steps, evaluation samples, LoadGen's phase), its ETA, and the run's ETA from the
estimates of the cases still to come. On a terminal one live display (the case's bar under the run's bar); on any
other output a plain line at least every BERTBENCH_PROGRESS_EVERY seconds (30)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bertbench.console import info
from bertbench.progress import plain_every_s, stderr_console
from bertbench.workloads.estimate import Estimate, duration_text


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class CaseProgress:
    """The latest a case has reported through its progress file."""

    path: Path
    started: float = field(default_factory=time.monotonic)
    offset: int = 0
    bar: str | None = None
    done: int = 0
    total: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    bar_started: float | None = None
    bar_first_done: tuple[float, int] | None = None
    phase: str | None = None

    def read(self) -> None:
        """Take in the events appended since the last read (a half-written last line waits for the next)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "phase" in event:
                self.phase, self.bar = str(event["phase"]), None
            elif "bar" in event:
                if event["bar"] != self.bar or event.get("done", 0) < self.done:
                    self.bar, self.bar_started, self.bar_first_done = str(event["bar"]), time.monotonic(), None
                self.done, self.total = int(event.get("done", 0)), int(event.get("total", 0))
                self.fields = dict(event.get("fields") or {})
                if self.done and self.bar_first_done is None:
                    self.bar_first_done = (time.monotonic(), self.done)
                if event.get("end"):
                    self.phase = f"{self.bar} done"

    def bar_eta(self) -> float | None:
        """Seconds the current bar still needs, from its own pace (None before it has a pace)."""
        if not self.bar or not self.total or self.bar_started is None or not self.done:
            return None
        elapsed = time.monotonic() - self.bar_started
        return elapsed / self.done * (self.total - self.done)

    def what(self) -> str:
        """`train 120/400 30% loss 0.41`, or the phase."""
        if self.bar:
            share = f" {100 * self.done / self.total:.0f}%" if self.total else ""
            extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items())
            return f"{self.bar} {self.done}/{self.total}{share} {extra}".rstrip()
        return self.phase or "starting"


class RunProgress:
    """The run's display: which case, how far, and when the run will end."""

    def __init__(self, workload: str, order: list[str], estimates: dict[str, Estimate], live: bool) -> None:
        self.workload, self.order, self.estimates = workload, order, estimates
        self.finished: set[str] = set()
        self.case: str | None = None
        self.progress: CaseProgress | None = None
        self.live = live and stderr_console.is_terminal
        self.every = plain_every_s()
        self.last_line = time.monotonic()
        self.display: Progress | None = None

    # ---- estimates --------------------------------------------------------------------------------------------

    def case_remaining(self) -> float | None:
        """The running case's remaining seconds: the pace of the bar it is in (training steps, evaluation
        samples) while it has one, else its estimate less the time it has run."""
        if self.case is None or self.progress is None:
            return None
        from_bar = self.progress.bar_eta()
        if from_bar is not None:
            return from_bar
        estimate = self.estimates.get(self.case)
        if estimate is None or estimate.seconds is None:
            return None
        return max(0.0, estimate.seconds - (time.monotonic() - self.progress.started))

    def run_remaining(self) -> float | None:
        """Seconds until the run ends: the running case's remainder and the estimates of the cases to come."""
        total = 0.0
        for name in self.order:
            if name in self.finished or name == self.case:
                continue
            estimate = self.estimates.get(name)
            if estimate is None or estimate.seconds is None:
                return None
            total += estimate.seconds
        if self.case is not None:
            current = self.case_remaining()
            if current is None:
                return None
            total += current
        return total

    # ---- events -----------------------------------------------------------------------------------------------

    def __enter__(self) -> RunProgress:
        if self.live:
            self.display = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta {task.fields[eta]}"),
                TextColumn("{task.fields[what]}"),
                console=stderr_console,
                refresh_per_second=2,
                transient=False,
            )
            self.display.__enter__()
            self.run_task = self.display.add_task(
                f"run {self.workload}", total=len(self.order), eta=_clock(self.run_remaining()), what=""
            )
            self.case_task = self.display.add_task("case", total=None, eta="?", what="", visible=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)

    def case_started(self, name: str, progress_file: Path) -> None:
        """A case process starts; what it reports goes to `progress_file`."""
        self.case, self.progress = name, CaseProgress(progress_file)
        estimate = self.estimates.get(name)
        info(f"{name}: started ({len(self.finished) + 1}/{len(self.order)}, estimated {estimate.text()})")
        self.tick(force=True)

    def case_ended(self, name: str, skipped: bool = False) -> None:
        """A case finished, failed or was skipped."""
        self.finished.add(name)
        if self.case == name:
            self.case, self.progress = None, None
        self.tick(force=not skipped)

    def tick(self, force: bool = False) -> None:
        """Read the running case's news; redraw, or print a plain line when one is due."""
        if self.progress is not None:
            self.progress.read()
        run_eta = _clock(self.run_remaining())
        if self.display is not None:
            self.display.update(self.run_task, completed=len(self.finished), eta=run_eta)
            if self.progress is not None:
                progress = self.progress
                self.display.update(
                    self.case_task,
                    description=self.case,
                    total=progress.total if progress.bar and progress.total else None,
                    completed=progress.done if progress.bar else 0,
                    eta=_clock(self.case_remaining()),
                    what=progress.what(),
                    visible=True,
                )
            else:
                self.display.update(self.case_task, visible=False)
            return
        now = time.monotonic()
        # a line at least every `every` seconds: the poll comes every half second, so one is due a second early
        if self.progress is not None and (force or now - self.last_line >= self.every - 1.0):
            self.last_line = now
            elapsed = duration_text(now - self.progress.started)
            info(
                f"run {self.workload} {len(self.finished)}/{len(self.order)} cases, eta {run_eta} | {self.case} "
                f"({elapsed}): {self.progress.what()}, eta {_clock(self.case_remaining())}"
            )
