"""MLPerf LoadGen around the instance pool: test settings from the command's options, a QSL over prebuilt
features, and a SUT that batches queries up to the batch size and hands them to the instances."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertbench.bench.instances import InstancePool
from bertbench.bench.loadgen_conf import user_conf_text
from bertbench.choices import DEFAULT_MIN_QUERIES
from bertbench.tasks.batching import order_rows

SCENARIOS = {"offline": "Offline", "singlestream": "SingleStream", "multistream": "MultiStream", "server": "Server"}
MODES = {"performance": "PerformanceOnly", "accuracy": "AccuracyOnly"}
# Scaled to a 2-core machine: a test lasts seconds, not MLPerf's 600 s (--mlperf-defaults restores those).
MLPERF_MODEL = "bert"  # the built-in mlperf.conf's entry: 130 ms Server bound, 600 s minimum, …
SERVER_BOUND_MS = 130.0  # MLPerf's BERT Server latency bound
SERVER_SHARE = 0.5  # Server's default target: half the capacity measured at warm-up
# Offline's default expected QPS: twice the warm-up estimate (its first few batches ran at 0.70-0.81 of the test's
# rate on bert-tiny SQuAD); LoadGen issues 1.1 x expected QPS x min duration samples, so a test rather runs long.
OFFLINE_SHARE = 2.0


DEFAULT_MIN_DURATION_S = 10.0  # scaled to a 2-core machine (MLPerf: 600 s)
DEFAULT_SAMPLES_PER_QUERY = 8  # MultiStream (MLPerf: 8)


@dataclass
class TestPlan:
    """What one LoadGen test is asked to do. A value None is left to LoadGen's config: its built-in mlperf.conf (or
    --mlperf-conf) under --mlperf-defaults, or the user's --user-conf where it sets the key; else bertbench's scaled
    defaults fill it."""

    scenario: str
    mode: str
    num_samples: int
    min_duration_s: float | None
    min_query_count: int | None
    max_duration_s: float | None
    mlperf_defaults: bool
    target_qps: float | None  # Offline expected QPS, Server target QPS
    target_latency_ms: float | None  # Server bound; SingleStream/MultiStream expected latency
    samples_per_query: int | None  # MultiStream
    mlperf_conf: Path | None = None  # its lines go first into the one user.conf LoadGen is handed
    user_conf: Path | None = None  # the user's, copied into the one user.conf LoadGen is handed
    audit_config: Path | None = None  # an MLPerf compliance test's audit.config (LoadGen reads it last)
    test05: bool = False  # MLPerf TEST05: LoadGen's alternate seeds

    @property
    def scaled(self) -> bool:
        """Whether bertbench's defaults, scaled to a small machine, fill what nothing else sets."""
        return not (self.mlperf_defaults or self.mlperf_conf)


def plan_test(
    scenario: str,
    mode: str,
    num_samples: int,
    estimate: float,
    *,
    min_duration_s: float | None,
    min_query_count: int | None,
    max_duration_s: float | None,
    mlperf_defaults: bool,
    target_qps: float | None,
    target_latency_ms: float | None,
    samples_per_query: int | None,
    mlperf_conf: Path | None = None,
    user_conf: Path | None = None,
    conf_keys: frozenset[str] = frozenset(),
    audit_config: Path | None = None,
    test05: bool = False,
) -> TestPlan:
    """A test's plan: the values asked for; what is left open comes from the user's config file where it sets the
    key (`conf_keys`), from MLPerf's settings under --mlperf-defaults or --mlperf-conf, else from bertbench's
    defaults scaled to a small machine; targets are derived from the warm-up's samples/s `estimate` unless given."""
    scaled = not (mlperf_defaults or mlperf_conf)

    def fill(value: Any, key: str, default: Any) -> Any:
        return value if value is not None or key in conf_keys or not scaled else default

    min_duration_s = fill(min_duration_s, "min_duration", DEFAULT_MIN_DURATION_S)
    min_query_count = fill(min_query_count, "min_query_count", DEFAULT_MIN_QUERIES[scenario])
    samples_per_query = fill(samples_per_query, "samples_per_query", DEFAULT_SAMPLES_PER_QUERY)
    per_query = 1 if scenario == "singlestream" else (samples_per_query or DEFAULT_SAMPLES_PER_QUERY)
    # mlperf.conf's targets are placeholders "to be overridden by user.conf" (Server's latency bound aside)
    if target_qps is None and "target_qps" not in conf_keys:
        if scenario == "offline":
            target_qps = OFFLINE_SHARE * estimate
        elif scenario == "server":
            target_qps = SERVER_SHARE * estimate
    if target_latency_ms is None and "target_latency" not in conf_keys:
        if scenario == "server" and scaled:
            target_latency_ms = SERVER_BOUND_MS
        elif scenario in ("singlestream", "multistream"):
            target_latency_ms = 1000.0 * per_query / max(estimate, 1e-9)
    return TestPlan(
        scenario=scenario,
        mode=mode,
        num_samples=num_samples,
        min_duration_s=min_duration_s,
        min_query_count=min_query_count,
        max_duration_s=max_duration_s,
        mlperf_defaults=mlperf_defaults,
        target_qps=target_qps,
        target_latency_ms=target_latency_ms,
        samples_per_query=samples_per_query,
        mlperf_conf=mlperf_conf,
        user_conf=user_conf,
        audit_config=audit_config,
        test05=test05,
    )


def plan_settings(plan: TestPlan) -> dict[str, float | int]:
    """What the plan sets, as LoadGen's config keys (times in ms), for the user.conf LoadGen is handed."""
    # the samples the QSL holds in memory, as many as there are: mlperf.conf's 10,833 (SQuAD v1.1 dev's windows)
    # would be logged as if loaded where LoadGen can load no more than the QSL has
    values: dict[str, float | int] = {"performance_sample_count_override": plan.num_samples}
    if plan.min_duration_s is not None:
        values["min_duration"] = round(plan.min_duration_s * 1000)
    if plan.min_query_count is not None:
        values["min_query_count"] = plan.min_query_count
    if plan.max_duration_s:
        values["max_duration"] = round(plan.max_duration_s * 1000)
    if plan.samples_per_query is not None and plan.scenario == "multistream":
        values["samples_per_query"] = plan.samples_per_query
    if plan.target_qps is not None and plan.scenario in ("offline", "server"):
        values["target_qps"] = plan.target_qps
    if plan.target_latency_ms is not None and plan.scenario != "offline":
        values["target_latency"] = plan.target_latency_ms
    return values


# LoadGen counts the user.conf files a process reads: from the second on, every test's detail log says "Multiple
# conf files are used. This is not valid for official submission" (an error to MLPerf's checker). So a process reads
# its config files once, keeps the settings LoadGen made of them, and gives each later test those settings with the
# test's own values set on top: what LoadGen would make of the test's user.conf, which is written beside its logs.
_READ_ONCE: dict[tuple[str, str, str], dict[str, Any]] = {}
_LOADGEN_OWN = ("scenario", "mode")  # set per test, never taken from a file


def _base_settings(plan: TestPlan, scenario: str) -> dict[str, Any]:
    """The TestSettings LoadGen makes of its built-in mlperf.conf and the user's files, read once per process."""
    import mlperf_loadgen as lg

    key = (str(plan.mlperf_conf), str(plan.user_conf), scenario)
    if key not in _READ_ONCE:  # (a process that benches several configurations, a test suite's, reads again)
        with tempfile.TemporaryDirectory(prefix="bertbench-conf-") as folder:
            path = Path(folder) / "user.conf"
            path.write_text(user_conf_text(scenario, {}, plan.user_conf, plan.mlperf_conf), encoding="utf-8")
            settings = lg.TestSettings()
            if settings.FromConfig(str(path), MLPERF_MODEL, scenario, 1) != 0:  # built-in mlperf.conf, then it
                given = ", ".join(str(p) for p in (plan.mlperf_conf, plan.user_conf) if p) or "its built-in mlperf.conf"
                raise ValueError(f"LoadGen could not read {given}")
        names = [n for n in dir(settings) if not n.startswith("_") and not callable(getattr(settings, n))]
        _READ_ONCE[key] = {n: getattr(settings, n) for n in names if n not in _LOADGEN_OWN}
    return _READ_ONCE[key]


def build_settings(plan: TestPlan, written: Path) -> object:
    """LoadGen TestSettings for `plan`: LoadGen's built-in mlperf.conf, then the lines of --mlperf-conf and
    --user-conf (read once per process), then what the command line and bertbench's defaults set. The seeds stay
    MLPerf's. The same settings as one user.conf LoadGen would read are written to `written` (beside the logs; the
    MLPerf export's user.conf)."""
    import mlperf_loadgen as lg

    scenario = SCENARIOS[plan.scenario]
    values = plan_settings(plan)
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(user_conf_text(scenario, values, plan.user_conf, plan.mlperf_conf), encoding="utf-8")
    settings = lg.TestSettings()
    for name, value in _base_settings(plan, scenario).items():
        setattr(settings, name, value)
    _apply(settings, scenario, values)
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = getattr(lg.TestMode, MODES[plan.mode])
    if plan.test05:  # LoadGen then runs PerformanceOnly with its test05 seeds
        from bertbench.bench.compliance import mlperf_test05_seeds

        settings.test05 = True
        for key, seed in mlperf_test05_seeds(scenario).items():
            setattr(settings, f"test05_{key}", seed)
    return settings


def _apply(settings: Any, scenario: str, values: dict[str, float | int]) -> None:
    """Set config keys (LoadGen's names, ms) on TestSettings as LoadGen's FromConfig sets them for `scenario`."""
    if "performance_sample_count_override" in values:
        settings.performance_sample_count_override = int(values["performance_sample_count_override"])
    if "min_duration" in values:
        settings.min_duration_ms = int(values["min_duration"])
    if "max_duration" in values:
        settings.max_duration_ms = int(values["max_duration"])
    if "min_query_count" in values:
        settings.min_query_count = int(values["min_query_count"])
    if "samples_per_query" in values:
        settings.multi_stream_samples_per_query = int(values["samples_per_query"])
    if "target_qps" in values:
        if scenario == "Offline":
            settings.offline_expected_qps = float(values["target_qps"])
        else:
            settings.server_target_qps = float(values["target_qps"])
    if "target_latency" in values:
        nanoseconds = int(float(values["target_latency"]) * 1_000_000)
        if scenario == "Server":
            settings.server_target_latency_ns = nanoseconds
        elif scenario == "SingleStream":
            settings.single_stream_expected_latency_ns = nanoseconds
        elif scenario == "MultiStream":
            settings.multi_stream_expected_latency_ns = nanoseconds


class BatchingSut:
    """LoadGen's system under test: queries -> batches of at most `batch_size` -> the instance pool."""

    def __init__(self, pool: InstancePool, lengths: np.ndarray, batch_size: int, padding: str, accuracy: bool) -> None:
        self.pool, self.lengths, self.batch_size = pool, lengths, batch_size
        self.padding, self.accuracy = padding, accuracy
        self.issued = 0
        self.outstanding: set[int] = set()
        self.lock = threading.Lock()
        self.failed = False

    def issue_queries(self, query_samples: list) -> None:
        """LoadGen's callback: queue the samples (Offline: all at once; sorted by length for `sorted` padding)."""
        items = [(q.id, q.index) for q in query_samples]
        with self.lock:
            self.issued += len(items)
            if self.failed:
                self._complete_now([i for i, _ in items])
                return
            self.outstanding.update(i for i, _ in items)
        if self.padding == "sorted" and len(items) > 1:
            # The same order as eval's sorted plan: longest first, ties in input (QSL) order.
            items.sort(key=lambda item: item[1])
            items = [items[k] for k in order_rows(self.lengths[[index for _, index in items]], self.padding)]
        for start in range(0, len(items), self.batch_size):
            self.pool.submit(items[start : start + self.batch_size], self.batch_size, self.accuracy, self.padding)

    def flush_queries(self) -> None:
        """Nothing is held back: batches leave as soon as they are formed."""

    def on_done(self, ids: list[int], payloads: list[bytes] | None) -> None:
        """An instance finished a batch: tell LoadGen (with each sample's outputs in accuracy mode)."""
        import mlperf_loadgen as lg

        with self.lock:
            if self.failed:  # on_failure has completed every outstanding sample already
                return
            self.outstanding.difference_update(ids)
        if payloads is None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
            return
        buffers = [np.frombuffer(p, dtype=np.uint8) for p in payloads]  # alive until LoadGen has copied them
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(i, b.ctypes.data, b.nbytes) for i, b in zip(ids, buffers, strict=True)]
        )

    def on_failure(self, reason: str) -> None:
        """An instance failed: complete everything outstanding so LoadGen can end; the job reports the failure."""
        with self.lock:
            if self.failed:
                return
            self.failed = True
            ids = list(self.outstanding)
            self.outstanding.clear()
        self.pool.drain()
        self._complete_now(ids)

    @staticmethod
    def _complete_now(ids: list[int]) -> None:
        import mlperf_loadgen as lg

        if ids:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])


def run_test(
    sut: BatchingSut, settings: object, num_samples: int, log_dir: Path, audit_config: Path | None = None
) -> float:
    """One LoadGen test; its logs go to `log_dir` untouched. Returns the wall seconds of StartTest. LoadGen reads
    `audit_config` (a compliance test's) at the start; without one it is given a path that does not exist, so that
    an audit.config left in the working directory never changes a test unasked."""
    import mlperf_loadgen as lg

    log_dir.mkdir(parents=True, exist_ok=True)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    handle = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    qsl = lg.ConstructQSL(num_samples, num_samples, lambda samples: None, lambda samples: None)
    sut.pool.start_collecting(sut.on_done, sut.on_failure)
    try:
        start = time.perf_counter()
        audit = str(audit_config) if audit_config else str(log_dir / "no-audit.config")
        lg.StartTestWithLogSettings(handle, qsl, settings, log_settings, audit)
        return time.perf_counter() - start
    finally:
        sut.pool.stop_collecting()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(handle)
