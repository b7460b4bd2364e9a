"""Is the machine quiet enough to time on? The CPU time other processes take, and a short GEMM probe against
this machine's quiet roof (FP32 torch.matmul, measured once with `bertbench bench --roof` and cached per CPU model
and thread count). A figure measured while something else runs is wrong silently: this module makes it loud."""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.cache import default_cache_dir
from bertbench.hardware import cpu_model
from bertbench.io_utils import atomic_write_json, sha256_text

ROOF_SIZE, ROOF_REPEATS = 2048, 5  # the GUIDE's roof: 2048^3, best of 5
# A quiet 2-thread roof on this VM scatters between ~115 and ~175 GFLOP/s from one measurement to the next: the
# cached roof is the best of several rounds (a roof is an upper bound), with their median and spread kept.
ROOF_ROUNDS = 5
PROBE_SIZE, PROBE_REPEATS = 1024, 10  # a quick probe (~0.15 s) taken before every timed run
BUSY_CORES = 0.25  # other processes using more than a quarter core on average: contended
# On this VM a quiet 1024^3 probe scatters by +-10 % run to run, while one busy core halves it: the probe is
# compared with the median of quiet probes, and only a drop below 70 % (seen twice) counts as contention.
SLOW_PROBE = 0.70
QUIET_PROBES = 5


def _stat_jiffies() -> tuple[int, int, int]:
    """(busy incl. steal, total, cpus) from /proc/stat's first line."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal  # steal: other guests on the same host
    return busy, busy + idle + iowait, os.cpu_count() or 1


def _process_jiffies(pids: Iterable[int]) -> int:
    """utime + stime of these (live) processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total


def _reaped_children_jiffies() -> int:
    """CPU time of every child this process has waited for (their /proc entries are gone)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK"))


class OtherLoadMeter:
    """CPU cores used by processes other than ours between start() and cores(). `count_reaped_children`: a child
    that ran and was waited for in between is ours too (a benchmark driver timing one subprocess per path)."""

    def __init__(
        self, our_pids: Callable[[], list[int]] = lambda: [os.getpid()], count_reaped_children: bool = False
    ) -> None:
        self.our_pids = our_pids
        self.count_reaped_children = count_reaped_children
        self.start()

    def _our_jiffies(self) -> int:
        reaped = _reaped_children_jiffies() if self.count_reaped_children else 0
        return _process_jiffies(self.our_pids()) + reaped

    def start(self) -> None:
        """Take the first snapshot."""
        self.busy, self.total, self.cpus = _stat_jiffies()
        self.ours = self._our_jiffies()

    def cores(self) -> float:
        """Average number of cores other processes kept busy since start()."""
        busy, total, cpus = _stat_jiffies()
        ours = self._our_jiffies()
        elapsed = (total - self.total) / cpus
        if elapsed <= 0:
            return 0.0
        return max(0.0, (busy - self.busy - (ours - self.ours)) / elapsed)


def gemm_gflops(size: int, repeats: int, threads: int) -> float:
    """FP32 torch.matmul size^3 at `threads` threads: best of `repeats`, GFLOP/s (the caller's thread count is
    restored afterwards)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        a @ b  # first call: allocation and kernel selection
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def _roof_path(cache_root: Path, threads: int) -> Path:
    key = sha256_text(json.dumps([cpu_model(), threads, ROOF_SIZE, PROBE_SIZE]))[:16]
    return cache_root / "roof" / f"{key}.json"


def measure_roof(threads: int, cache_root: Path) -> dict[str, Any]:
    """Measure the quiet roof and probe at `threads` threads; cached only when the machine was quiet."""
    meter = OtherLoadMeter()
    time.sleep(0.5)
    others = meter.cores()
    meter.start()
    rounds = []
    for _ in range(ROOF_ROUNDS):
        rounds.append(gemm_gflops(ROOF_SIZE, ROOF_REPEATS, threads))
        time.sleep(0.2)
    probe = statistics.median(gemm_gflops(PROBE_SIZE, PROBE_REPEATS, threads) for _ in range(QUIET_PROBES))
    others = max(others, meter.cores() - threads)  # during the GEMMs our own threads fill `threads` cores
    record = {
        "cpu_model": cpu_model(),
        "threads": threads,
        "roof_gflops": max(rounds),
        "roof_median_gflops": statistics.median(rounds),
        "roof_min_gflops": min(rounds),
        "probe_gflops": probe,
        "other_cpu_cores": others,
        "quiet": others <= BUSY_CORES,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if record["quiet"]:
        for root in _roof_roots(cache_root):
            atomic_write_json(_roof_path(root, threads), record)
    return record


def _roof_roots(cache_root: Path) -> list[Path]:
    """The roof is a fact of the machine: kept in the run's cache root and in the default one, so that a run with
    its own --cache-dir finds the roof measured before."""
    return list(dict.fromkeys([Path(cache_root), default_cache_dir()]))


def cached_roof(threads: int, cache_root: Path) -> dict[str, Any] | None:
    """The quiet roof measured earlier on this CPU model at this thread count, if any."""
    for root in _roof_roots(cache_root):
        try:
            return json.loads(_roof_path(root, threads).read_text())
        except (OSError, ValueError):
            continue
    return None


@dataclass
class QuietCheck:
    """The machine's state just before a timed run."""

    other_cpu_cores: float
    probe_gflops: float
    quiet_probe_gflops: float | None
    quiet_roof_gflops: float | None
    threads: int

    @property
    def contended(self) -> bool:
        """Other processes were busy, or the probe ran well below its quiet value."""
        slow = self.quiet_probe_gflops is not None and self.probe_gflops < SLOW_PROBE * self.quiet_probe_gflops
        return self.other_cpu_cores > BUSY_CORES or slow

    def reason(self) -> str:
        """One line saying why the machine counts as contended."""
        parts = []
        if self.other_cpu_cores > BUSY_CORES:
            parts.append(f"other processes used {self.other_cpu_cores:.2f} cores")
        if self.quiet_probe_gflops and self.probe_gflops < SLOW_PROBE * self.quiet_probe_gflops:
            parts.append(
                f"GEMM probe {self.probe_gflops:.1f} GFLOP/s, {self.probe_gflops / self.quiet_probe_gflops:.0%} of "
                f"its quiet {self.quiet_probe_gflops:.1f}"
            )
        return "; ".join(parts) or "quiet"

    @property
    def basis(self) -> str:
        """What the verdict rests on: the probe against this CPU's quiet roof, or other processes' CPU alone."""
        if self.quiet_probe_gflops is None:
            return "no quiet roof known: other processes' CPU only (measure it with `bertbench bench --roof`)"
        return "other processes' CPU and the GEMM probe against the quiet roof"

    def facts(self) -> dict[str, Any]:
        """Record keys."""
        return {
            "contended": self.contended,
            "contention_reason": self.reason() if self.contended else None,
            "quiet_basis": self.basis,
            "quiet_roof_known": self.quiet_probe_gflops is not None,
            "other_cpu_cores_before": self.other_cpu_cores,
            "probe_gflops": self.probe_gflops,
            "quiet_probe_gflops": self.quiet_probe_gflops,
            "quiet_roof_gflops": self.quiet_roof_gflops,
            "roof_threads": self.threads,
        }


def quiet_check(threads: int, cache_root: Path, our_pids: Callable[[], list[int]], window_s: float = 0.5) -> QuietCheck:
    """Watch other processes' CPU use for `window_s`, then probe the GEMM speed at `threads` threads."""
    meter = OtherLoadMeter(our_pids)
    time.sleep(window_s)
    others = meter.cores()
    roof = cached_roof(threads, cache_root)
    probe = gemm_gflops(PROBE_SIZE, PROBE_REPEATS, threads)
    if roof and probe < SLOW_PROBE * roof["probe_gflops"]:
        time.sleep(window_s)  # a transient dip is not contention: look again
        probe = max(probe, gemm_gflops(PROBE_SIZE, PROBE_REPEATS, threads))
    return QuietCheck(
        others, probe, roof["probe_gflops"] if roof else None, roof["roof_gflops"] if roof else None, threads
    )


class WatchedRun:
    """A timed region with the quiet check every timed figure carries: the check just before (other processes'
    CPU and the GEMM probe against the quiet roof), and other processes' CPU during it.

    `with WatchedRun(threads, cache_root) as watch: …timed work…; record.update(watch.facts())`"""

    def __init__(
        self, threads: int, cache_root: Path, our_pids: Callable[[], list[int]] = lambda: [os.getpid()]
    ) -> None:
        self.threads = min(threads, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else threads)
        self.cache_root, self.our_pids = cache_root, our_pids
        self.check: QuietCheck | None = None
        self.during = 0.0

    def __enter__(self) -> WatchedRun:
        if cached_roof(self.threads, self.cache_root) is None:
            measure_roof(self.threads, self.cache_root)  # once per CPU model and thread count; kept only if quiet
        self.check = quiet_check(self.threads, self.cache_root, self.our_pids)
        self.meter = OtherLoadMeter(self.our_pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.during = self.meter.cores()

    @property
    def contended(self) -> bool:
        """Busy before (the check) or during the timed region."""
        return bool(self.check and self.check.contended) or self.during > BUSY_CORES

    def facts(self) -> dict[str, Any]:
        """The check's keys, other processes' CPU during the run, and the verdict over both."""
        assert self.check is not None, "use WatchedRun as a context manager"
        facts = {**self.check.facts(), "other_cpu_cores_during": self.during, "contended": self.contended}
        if self.contended and not self.check.contended:
            facts["contention_reason"] = f"other processes used {self.during:.2f} cores during the run"
        return facts
