"""What each command takes: one config dataclass per command, whose fields are also its command-line options
(help, choices and defaults live here, once). Imports nothing heavy, so `bertbench --help` stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.choices import PADDING_MODES
from bertbench.cliargs import fraction, nested, option, positive_float, positive_int
from bertbench.runtimes.options import RuntimeOptions
from bertbench.tasks.mlm.options import MlmOptions
from bertbench.training.config import PretrainTrainConfig, TrainConfig


@dataclass(kw_only=True)
class ModelChoice:
    """Which model, and how far its files are trusted."""

    model: str = option(help="HF directory, hub id, 'minilm-l6' or a size preset (bert-tiny … bert-large)")
    allow_pickle: bool = option(False, help="allow loading pytorch_model.bin (pickle; weights_only)")
    seed: int = option(42, help="seed for fresh heads (and sampling)")


@dataclass(kw_only=True)
class RunPlace:
    """Where a run writes, caches and computes."""

    output_dir: Path = option(help="results directory (metrics.json, predictions, model)")
    overwrite: bool = option(False, help="replace results in a non-empty output directory")
    threads: int | None = option(
        None, help="compute threads (default: the cores this process may use)", parse=positive_int
    )
    cache_dir: Path | None = option(None, help="cache root (default ${XDG_CACHE_HOME:-~/.cache}/bertbench)")
    device: str = option("cpu", help="cpu or cuda[:N]")
    no_progress: bool = option(False, help="no progress bars")

    @property
    def show_progress(self) -> bool:
        """Progress bars on stderr unless --no-progress."""
        return not self.no_progress


@dataclass(kw_only=True)
class EvalConfig(ModelChoice, RunPlace):
    """`bertbench eval TASK`: accuracy mode."""

    task: str = "squad"  # the sub-command
    data: Path = option(help="SQuAD JSON, SST-2 TSV, or a text corpus (mlm)")
    runtime: RuntimeOptions = nested(RuntimeOptions)
    batch_size: int = option(32, help="samples per inference batch", parse=positive_int)
    padding: str = option("sorted", help="batch padding (results never change)", choices=PADDING_MODES)
    max_samples: int | None = option(None, help="SQuAD: first N questions; else first N rows", parse=positive_int)
    calibration_data: Path | None = option(None, help="training data for static INT8 / fallback (never the eval file)")
    calibration_samples: int = option(1000, help="calibration samples for static INT8", parse=positive_int)
    accuracy_target: float = option(0.99, help="relative to FP32 (MLPerf bert-99)", parse=fraction)
    strict: bool = option(False, help="exit 3 when the accuracy target is missed")
    int8_fallback: bool = option(
        False, help="keep the most INT8-sensitive layers in FP32 until the target is met (on --calibration-data)"
    )
    tuning_samples: int = option(
        200, help="samples of --calibration-data the fallback search scores", parse=positive_int
    )
    task_options: Any = None  # the task's own options dataclass, from the task's sub-command


@dataclass(kw_only=True)
class TrainingRun(ModelChoice, RunPlace):
    """Options every training command shares."""

    resume: bool = option(False, help="continue from the newest checkpoint in --output-dir")
    eval_batch_size: int = option(64, help="batch size of the evaluations during training", parse=positive_int)
    dist_timeout: float = option(120.0, help="process-group timeout (s) under torchrun", parse=positive_float)
    dropout: float | None = option(None, help="override every dropout rate (0 for parity runs)", parse=fraction)


@dataclass(kw_only=True)
class FinetuneConfig(TrainingRun):
    """`bertbench finetune TASK`."""

    task: str = "squad"  # the sub-command
    train: Path = option(help="training file")
    eval: Path | None = option(None, help="evaluate on this file after each epoch")
    max_train_samples: int | None = option(None, help="SQuAD: first N questions; else rows", parse=positive_int)
    max_eval_samples: int | None = option(None, help="first N evaluation questions or rows", parse=positive_int)
    training: TrainConfig = nested(TrainConfig)
    task_options: Any = None


@dataclass(kw_only=True)
class PretrainConfig(TrainingRun):
    """`bertbench pretrain`: masked-LM pretraining with a target accuracy."""

    corpus: list[Path] = option(help="text files, a blank line between documents")
    eval_corpus: list[Path] = option(help="held-out documents for mlm_accuracy", default_factory=list)
    nsp: bool = option(False, help="also train next-sentence prediction")
    init_from: str | None = option(None, help="start from this checkpoint's weights (shapes checked)")
    eval_every_samples: int | None = option(None, help="evaluate every N training samples", parse=positive_int)
    eval_samples: int = option(10000, help="size of the fixed evaluation set", parse=positive_int)
    target_mlm_accuracy: float | None = option(None, help="stop when reached", parse=fraction)
    training: PretrainTrainConfig = nested(PretrainTrainConfig)
    task_options: MlmOptions = nested(MlmOptions)


@dataclass(kw_only=True)
class BuildCorpusConfig:
    """`bertbench build-corpus`."""

    squad: list[Path] = option(help="SQuAD files whose contexts become documents", default_factory=list)
    sst2: list[Path] = option(help="SST-2 files whose sentences become documents", default_factory=list)
    output: Path = option(help="the corpus file to write")
