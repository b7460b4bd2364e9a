"""MLPerf Training's log of a pretraining run (`DIR/mlperf_training_log.txt`), written with MLCommons' own
`mlperf_logging.mllog` (the optional extra `bertbench[mlperf]`) so that `python -m mlperf_logging.compliance_checker
--usage training --ruleset 5.0.0 LOG` reads it. BERT's keys as its reference logs them: the submission facts, the
hyper-parameters, init_start/init_stop, run_start/run_stop with its status, blocks of training samples between
evaluations, eval_accuracy with epoch_num = training samples seen; the time to train is MLPerf's, run_start to
run_stop. The division is open unless the run is MLPerf's closed one (target 0.720 on LAMB), which bertbench's
short runs never are.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

LOG_NAME = "mlperf_training_log.txt"
BENCHMARK = "bert"
CLOSED_TARGET = 0.720  # MLPerf Training BERT's masked-LM accuracy


class MlperfUnavailable(Exception):
    """mlperf-logging is not installed."""


def now_ms() -> float:
    """MLPerf's clock: milliseconds since the epoch."""
    return time.time() * 1000


class TrainingLog:
    """One run's MLPerf Training log (rank 0 only)."""

    def __init__(self, path: Path, init_start_ms: float) -> None:
        try:
            from mlperf_logging import mllog
            from mlperf_logging.mllog.mllog import MLLogger
        except ImportError:
            raise MlperfUnavailable("pip install 'bertbench[mlperf]' for MLPerf Training logs") from None
        self.path, self.constants = path, mllog.constants
        self.logger = logging.getLogger(f"bertbench.mllog.{id(self)}")
        self.logger.propagate = False  # the file only: bertbench's own output stays its own
        self.logger.setLevel(logging.INFO)
        self.handler = logging.FileHandler(path, mode="w", encoding="utf-8")
        self.logger.addHandler(self.handler)
        self.log = MLLogger(logger=self.logger, default_stack_offset=2)
        self.log.start(key=self.constants.INIT_START, time_ms=init_start_ms)
        self.block_from = 0
        self.run_start_ms: float | None = None

    def submission(self, org: str, platform: str, division: str, status: str = "research") -> None:
        """Who ran what where (submission_*), and that caches were not warm (cache_clear)."""
        c = self.constants
        for key, value in (
            (c.SUBMISSION_BENCHMARK, BENCHMARK),
            (c.SUBMISSION_ORG, org),
            (c.SUBMISSION_DIVISION, division),
            (c.SUBMISSION_STATUS, status),
            (c.SUBMISSION_PLATFORM, platform),
        ):
            self.log.event(key=key, value=value)
        self.log.event(key=c.CACHE_CLEAR, value=True)

    def hyperparameters(self, values: dict[str, Any]) -> None:
        """The run's settings under MLPerf's keys."""
        for key, value in values.items():
            self.log.event(key=key, value=value)

    def run_started(self) -> None:
        """Initialisation ends, the timed run begins (and its first block of training samples)."""
        self.log.end(key=self.constants.INIT_STOP)
        self.run_start_ms = now_ms()
        self.log.start(key=self.constants.RUN_START, time_ms=self.run_start_ms)

    def block_started(self, samples: int, block_samples: int) -> None:
        """Training samples from `samples` on, `block_samples` of them until the next evaluation."""
        self.block_from = samples
        metadata = {"first_epoch_num": samples, "epoch_count": max(1, block_samples)}
        self.log.start(key=self.constants.BLOCK_START, metadata=metadata)

    def evaluation_started(self, samples: int) -> None:
        """The block ends; an evaluation after `samples` training samples begins."""
        c = self.constants
        self.log.end(key=c.BLOCK_STOP, metadata={"first_epoch_num": self.block_from})
        self.log.start(key=c.EVAL_START, metadata={"epoch_num": samples})

    def evaluated(self, samples: int, accuracy: float) -> None:
        """The evaluation's masked-LM accuracy."""
        c = self.constants
        self.log.event(key=c.EVAL_ACCURACY, value=accuracy, metadata={"epoch_num": samples})
        self.log.end(key=c.EVAL_STOP, metadata={"epoch_num": samples})

    def run_stopped(self, samples: int, eval_samples: int, reached: bool) -> float | None:
        """The run ends (status success when the target was reached); MLPerf's time to train in seconds."""
        c = self.constants
        self.log.event(key=c.TRAIN_SAMPLES, value=samples)
        self.log.event(key=c.EVAL_SAMPLES, value=eval_samples)
        stop_ms = now_ms()
        status = c.SUCCESS if reached else c.ABORTED
        self.log.end(key=c.RUN_STOP, time_ms=stop_ms, metadata={"status": status, "epoch_num": samples})
        self.close()
        return (stop_ms - self.run_start_ms) / 1000 if self.run_start_ms is not None else None

    def close(self) -> None:
        """Flush and release the file."""
        self.handler.close()
        self.logger.removeHandler(self.handler)
