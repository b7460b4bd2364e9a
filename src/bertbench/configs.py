"""What each command takes: one config dataclass per command, whose fields are also its command-line options
(help, choices and defaults live here, once). Imports nothing heavy, so `bertbench --help` stays fast."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.choices import (
    BACKENDS,
    BENCH_MODES,
    COMPLIANCE_TESTS,
    DEFAULT_MIN_QUERIES,
    OUTPUT_DTYPES,
    PADDING_MODES,
    PRECISIONS,
    SCENARIOS,
)
from bertbench.cliargs import (
    READS,
    STORE,
    WRITES,
    batch_size_value,
    batch_size_values,
    device_value,
    fraction,
    identifier,
    key_value,
    nested,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
    seed_value,
    thread_count,
)
from bertbench.errors import UsageError
from bertbench.runtimes.options import RuntimeOptions
from bertbench.tasks.mlm.options import MlmOptions
from bertbench.training.config import PretrainTrainConfig, TrainConfig


def with_answer_text(task_options: Any, rule: str) -> Any:
    """Task options with SQuAD's answer-text rule decided by the command (`rule` when the user gave none)."""
    decide = getattr(task_options, "with_answer_text", None)
    return decide(rule) if decide else task_options


@dataclass(kw_only=True)
class ModelChoice:
    """Which model, and how far its files are trusted."""

    model: str = option(help="HF directory, hub id, 'minilm-l6' or a size preset (bert-tiny … bert-large)", role=READS)
    allow_pickle: bool = option(False, help="allow loading pytorch_model.bin (pickle; weights_only)")
    seed: int = option(42, help="seed for fresh heads (and sampling)", parse=seed_value)


@dataclass(kw_only=True)
class StoreChoice:
    """Where the run's row goes."""

    store: Path | None = option(
        None, help="results store (default ${XDG_DATA_HOME:-~/.local/share}/bertbench/results.sqlite)", role=STORE
    )


@dataclass(kw_only=True)
class TrackingChoice:
    """Whether the run is also logged to an MLflow tracking server."""

    mlflow_uri: str | None = option(
        None, help="also log the run to this MLflow tracking server (default: $MLFLOW_TRACKING_URI, if set)"
    )


@dataclass(kw_only=True)
class RunPlace(StoreChoice, TrackingChoice):
    """Where a run writes, caches and computes."""

    output_dir: Path = option(help="results directory (metrics.json, predictions, model)", role=WRITES)
    overwrite: bool = option(False, help="replace results in a non-empty output directory")
    threads: int | None = option(
        None, help="compute threads (default: the cores this process may use)", parse=thread_count
    )
    cache_dir: Path | None = option(None, help="cache root (default ${XDG_CACHE_HOME:-~/.cache}/bertbench)")
    device: str = option("cpu", help="cpu or cuda[:N]", parse=device_value)
    no_progress: bool = option(False, help="no progress bars")
    strict_data: bool = option(False, help="any skipped or suspect row of the data is an error (exit 2)")

    @property
    def show_progress(self) -> bool:
        """Progress bars on stderr unless --no-progress."""
        return not self.no_progress


@dataclass(kw_only=True)
class EvalConfig(ModelChoice, RunPlace):
    """`bertbench eval TASK`: accuracy mode."""

    task: str = "squad"  # the sub-command
    data: Path = option(help="SQuAD JSON, SST-2 TSV, or a text corpus (mlm)", role=READS)
    runtime: RuntimeOptions = nested(RuntimeOptions)
    batch_size: int = option(32, help="samples per inference batch", parse=batch_size_value)
    padding: str = option(
        "sorted",
        help="batch padding; changes speed, and results only where a batch's contents matter (per-batch dynamic INT8)",
        choices=PADDING_MODES,
    )
    max_samples: int | None = option(None, help="SQuAD: first N questions; else first N rows", parse=positive_int)
    calibration_data: Path | None = option(
        None, help="training data for static INT8 / fallback (never the eval file)", role=READS
    )
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

    def __post_init__(self) -> None:
        if self.runtime.backend == "null":
            raise UsageError("--backend null computes nothing: it measures the harness (bench --mode performance)")
        # an impossible combination is one line now, before any model or data is loaded
        self.runtime.check(self.device, self.task, calibration=self.calibration_data is not None)
        if self.int8_fallback and (self.runtime.precision != "int8" or self.calibration_data is None):
            raise UsageError("--int8-fallback needs --precision int8 and --calibration-data (training data)")
        self.task_options = with_answer_text(self.task_options, "characters")


MAX_TEST_S = 4 * 3600.0  # a LoadGen test that must last longer needs --max-duration to say so
MAX_LATENCY_MS = 3_600_000.0  # one hour per query: far beyond any bound, far below LoadGen's int64 nanoseconds
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def latency_ms_value(text: str) -> float:
    """A latency bound in ms: > 0 and at most an hour."""
    value = positive_float(text)
    if value > MAX_LATENCY_MS:
        raise argparse.ArgumentTypeError(f"{text} ms is more than an hour ({MAX_LATENCY_MS:.0f} ms)")
    return value


def env_value(text: str) -> str:
    """KEY=VALUE for the instances' environment: KEY a variable name; values Python checks at start-up checked."""
    key, _, value = key_value(text).partition("=")
    if not ENV_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(f"{text}: {key!r} is not an environment variable name")
    if key == "PYTHONHASHSEED" and value != "random" and not (value.isdigit() and int(value) <= 4294967295):
        raise argparse.ArgumentTypeError(f"{text}: PYTHONHASHSEED is 'random' or an integer in [0, 4294967295]")
    return text


def instances_value(text: str) -> int | str:
    """A positive integer, or "auto" (= available cores // --cores-per-instance)."""
    return "auto" if text == "auto" else positive_int(text)


@dataclass(kw_only=True)
class BenchConfig(ModelChoice, RunPlace):
    """`bertbench bench TASK`: performance mode through MLPerf LoadGen (or its accuracy pass)."""

    task: str = "squad"  # the sub-command
    data: Path = option(help="SQuAD JSON or SST-2 TSV (the QSL: one sample per window / sentence)", role=READS)
    runtime: RuntimeOptions = nested(RuntimeOptions)
    scenario: str = option("offline", help="MLPerf LoadGen scenario", choices=SCENARIOS)
    mode: str = option(
        "performance", help="performance, or accuracy (LoadGen's AccuracyOnly pass, scored)", choices=BENCH_MODES
    )
    batch_size: tuple[int, ...] = option(
        (32,),
        help="largest batch the SUT forms; a list (1,8,32) sweeps, one record each",
        parse=batch_size_values,
        one_token=True,
    )
    padding: str = option("sorted", help="batch padding (sorted: Offline queries by length)", choices=PADDING_MODES)
    max_samples: int | None = option(None, help="SQuAD: first N questions; else first N rows", parse=positive_int)
    min_duration: float | None = option(
        None, help="seconds a test runs at least (default 10, or the config files'; MLPerf: 600)", parse=positive_float
    )
    min_query_count: int | None = option(
        None, help="queries a test issues at least (default: Offline 1, else 64)", parse=positive_int
    )
    max_duration: float | None = option(
        None,
        help="stop issuing after N s (default: no limit, or the config files'; 0: no limit)",
        parse=non_negative_float,
    )
    mlperf_defaults: bool = option(False, help="MLPerf's own BERT settings (600 s, 130 ms Server bound, …)")
    target_qps: float | None = option(
        None,
        help="Offline expected / Server target QPS (default: measured at warm-up; Server half of it)",
        parse=positive_float,
    )
    target_latency_ms: float | None = option(
        None,
        help="Server latency bound (default 130); SingleStream/MultiStream expected latency",
        parse=latency_ms_value,
    )
    samples_per_query: int | None = option(
        None, help="MultiStream samples per query (default 8, or the config files')", parse=positive_int
    )
    instances: int | str = option(
        1, help="worker processes, or auto (= cores // --cores-per-instance)", parse=instances_value
    )
    cores_per_instance: int | None = option(
        None, help="cores pinned to each instance (default: available cores // instances)", parse=positive_int
    )
    oversubscribe: bool = option(False, help="allow more pinned cores than this process may use")
    env: tuple[str, ...] = option((), help="KEY=VALUE set in every instance (repeatable)", parse=env_value, repeat=True)
    require_quiet: bool = option(False, help="refuse to time on a contended machine")
    calibration_data: Path | None = option(
        None, help="training data for static INT8 (never the benchmarked file)", role=READS
    )
    calibration_samples: int = option(1000, help="calibration samples for static INT8", parse=positive_int)
    accuracy_target: float = option(0.99, help="accuracy mode: relative to FP32 (MLPerf bert-99)", parse=fraction)
    strict: bool = option(False, help="accuracy mode: exit 3 when the accuracy target is missed")
    output_dtype: str = option(
        "float32",
        help="accuracy log: logits as float32 or float16 (accuracy-squad.py --output_dtype)",
        choices=OUTPUT_DTYPES,
    )
    output_transposed: bool = option(
        False, help="accuracy log: SQuAD logits as [2, tokens] (accuracy-squad.py --output_transposed)"
    )
    mlperf_conf: Path | None = option(
        None, help="an mlperf.conf LoadGen reads (model bert; flags still win)", role=READS
    )
    user_conf: Path | None = option(
        None, help="a user.conf LoadGen reads after --mlperf-conf (flags still win)", role=READS
    )
    compliance: str | None = option(
        None,
        help="MLPerf compliance test: TEST01 (accuracy in performance mode) or TEST05 (other seeds)",
        choices=COMPLIANCE_TESTS,
    )
    task_options: Any = None

    def __post_init__(self) -> None:
        if self.runtime.backend == "null" and (self.mode != "performance" or self.compliance):
            # a compliance test scores outputs, and the null backend's are zeros
            raise UsageError(
                "--backend null computes nothing: it measures the harness in --mode performance only "
                "(no --mode accuracy, no --compliance)"
            )
        self.runtime.check(self.device, self.task, calibration=self.calibration_data is not None)
        # bench is the MLPerf harness: its F1 is the one MLPerf's accuracy-squad.py prints on its accuracy log
        self.task_options = with_answer_text(self.task_options, "mlperf")
        least = self.least_test_seconds()
        ceiling = self.max_duration or MAX_TEST_S
        if least > ceiling:
            raise UsageError(
                f"each test would run at least {least:g} s with these settings (--min-duration, --min-query-count, "
                f"--target-qps), above {'--max-duration' if self.max_duration else 'the ceiling of'} {ceiling:g} s"
                f"{'' if self.max_duration else ' (raise it with --max-duration)'}"
            )

    def least_test_seconds(self) -> float:
        """How long one LoadGen test lasts at least, from its settings alone (the model's speed aside): its
        minimum duration, and for Server the time its minimum queries take at the target rate."""
        if self.mlperf_defaults:
            return 600.0  # MLPerf's minimum duration
        least = self.min_duration or 10.0  # the default; config files' values are checked when they are read
        if self.scenario == "server" and self.target_qps:
            queries = self.min_query_count or DEFAULT_MIN_QUERIES["server"]
            least = max(least, queries / self.target_qps)
        return least


@dataclass(kw_only=True)
class BenchRoofConfig(StoreChoice):
    """`bertbench bench --roof`: measure this machine's quiet FP32 GEMM roof once (cached)."""

    roof: bool = option(False, help="measure the quiet FP32 GEMM roof for 1..N threads and cache it")
    cache_dir: Path | None = option(None, help="cache root (default ${XDG_CACHE_HOME:-~/.cache}/bertbench)")


@dataclass(kw_only=True)
class TrainingRun(ModelChoice, RunPlace):
    """Options every training command shares."""

    resume: bool = option(False, help="continue from the newest checkpoint in --output-dir")
    eval_batch_size: int = option(64, help="batch size of the evaluations during training", parse=batch_size_value)
    dist_timeout: float = option(120.0, help="process-group timeout (s) under torchrun", parse=positive_float)
    dropout: float | None = option(None, help="override every dropout rate (0 for parity runs)", parse=fraction)


@dataclass(kw_only=True)
class FinetuneConfig(TrainingRun):
    """`bertbench finetune TASK`."""

    task: str = "squad"  # the sub-command
    train: Path = option(help="training file", role=READS)
    eval: Path | None = option(None, help="evaluate on this file after each epoch", role=READS)
    max_train_samples: int | None = option(None, help="SQuAD: first N questions; else rows", parse=positive_int)
    max_eval_samples: int | None = option(None, help="first N evaluation questions or rows", parse=positive_int)
    training: TrainConfig = nested(TrainConfig)
    task_options: Any = None

    def __post_init__(self) -> None:
        self.task_options = with_answer_text(self.task_options, "characters")


def budget_value(text: str) -> float:
    """A FLOP budget: the fraction of the encoder's FLOPs to keep, strictly between 0 and 1."""
    value = fraction(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction strictly between 0 and 1 (of the FLOPs to keep)")
    return value


@dataclass(kw_only=True)
class PruneConfig(ModelChoice, RunPlace):
    """`bertbench prune TASK`: remove heads and feed-forward neurons of a fine-tuned model to a FLOP budget."""

    task: str = "squad"  # the sub-command
    train: Path = option(help="training file: importance and tuning read it (never the evaluated file)", role=READS)
    flops: float | None = option(
        None, help="keep this fraction of the encoder's FLOPs per window, e.g. 0.6", parse=budget_value
    )
    latency: float | None = option(
        None,
        help="or keep this fraction of the parent's latency on this machine (measured per layer, cached per CPU)",
        parse=budget_value,
    )
    latency_backend: str = option("torch", help="--latency: the backend it is measured on", choices=BACKENDS)
    latency_precision: str = option("fp32", help="--latency: the precision it is measured at", choices=PRECISIONS)
    latency_batch_size: int = option(32, help="--latency: windows per timed batch", parse=batch_size_value)
    flops_window: str = option(
        "mean",
        help="price FLOPs per window at the training data's mean window length or at --max-seq-length",
        choices=("mean", "max"),
    )
    importance_samples: int = option(
        2048, help="training samples whose gradients rank heads and neurons", parse=positive_int
    )
    tuning_samples: int = option(256, help="training samples the least-squares mask tuning fits", parse=positive_int)
    no_tuning: bool = option(False, help="skip the least-squares mask tuning (masks only)")
    no_rearrangement: bool = option(False, help="keep the search's heads and neurons (no block-Fisher rearrangement)")
    batch_size: int = option(16, help="samples per importance / tuning / distillation batch", parse=batch_size_value)
    distill_steps: int = option(
        0, help="then distil from the unpruned model for N batches (0: none)", parse=non_negative_int
    )
    distill_learning_rate: float = option(5e-5, help="AdamW learning rate of the distillation", parse=positive_float)
    distill_temperature: float = option(
        2.0, help="softmax temperature of the distillation targets", parse=positive_float
    )
    distill_hidden_weight: float = option(
        0.0,
        help="also match every layer's hidden states (squared error over real tokens) at this weight (0: logits only)",
        parse=non_negative_float,
    )
    eval: Path | None = option(
        None, help="then score the pruned model (and its parent, FP32 torch) on this file", role=READS
    )
    max_eval_samples: int | None = option(None, help="first N evaluation questions or rows", parse=positive_int)
    resume: bool = option(False, help="continue an interrupted prune in --output-dir")
    task_options: Any = None

    def __post_init__(self) -> None:
        self.task_options = with_answer_text(self.task_options, "characters")
        if (self.flops is None) == (self.latency is None):
            raise UsageError("prune: give one budget, --flops F or --latency F")
        if self.latency is not None:  # what the table is measured on must run here: refused now, in one line
            try:
                self.latency_options().check(self.device, self.task, calibration=False)
            except UsageError as exc:
                raise UsageError(f"--latency is measured on {exc}") from None

    def latency_options(self) -> RuntimeOptions:
        """The runtime the latency table is measured on (dynamic INT8 when --latency-precision int8)."""
        return RuntimeOptions(backend=self.latency_backend, precision=self.latency_precision)


@dataclass(kw_only=True)
class PretrainConfig(TrainingRun):
    """`bertbench pretrain`: masked-LM pretraining with a target accuracy."""

    corpus: list[Path] = option(help="text files, a blank line between documents", role=READS)
    eval_corpus: list[Path] = option(help="held-out documents for mlm_accuracy", default_factory=list, role=READS)
    nsp: bool = option(False, help="also train next-sentence prediction")
    init_from: str | None = option(None, help="start from this checkpoint's weights (shapes checked)", role=READS)
    eval_every_samples: int | None = option(None, help="evaluate every N training samples", parse=positive_int)
    eval_samples: int = option(10000, help="size of the fixed evaluation set", parse=positive_int)
    target_mlm_accuracy: float | None = option(None, help="stop when reached", parse=fraction)
    mlperf_submitter: str = option(
        "bertbench",
        help="the submission_org of the MLPerf Training log (DIR/mlperf_training_log.txt)",
        parse=identifier,
    )
    training: PretrainTrainConfig = nested(PretrainTrainConfig)
    task_options: MlmOptions = nested(MlmOptions)


@dataclass(kw_only=True)
class ConvertConfig:
    """`bertbench convert SRC --output-dir DIR`: a TensorFlow 1, MindSpore or NVIDIA PyTorch BERT checkpoint as a
    Hugging Face model directory."""

    src: Path = option(
        help="the checkpoint: a TF1 folder, release zip or prefix; a MindSpore .ckpt; an NVIDIA .pt",
        positional=True,
        role=READS,
    )
    output_dir: Path = option(help="the Hugging Face directory to write (new or empty)", role=WRITES)
    config: Path | None = option(
        None, help="bert_config.json (Google's keys) where none lies beside the checkpoint", role=READS
    )
    vocab: Path | None = option(None, help="vocab.txt where none lies beside the checkpoint", role=READS)
    cased: bool = option(False, help="keep the text's case (default: lower-case, unless the source's name says cased)")
    overwrite: bool = option(False, help="replace an earlier conversion in --output-dir")


@dataclass(kw_only=True)
class BuildCorpusConfig(StoreChoice):
    """`bertbench build-corpus`."""

    squad: list[Path] = option(help="SQuAD files whose contexts become documents", default_factory=list, role=READS)
    sst2: list[Path] = option(help="SST-2 files whose sentences become documents", default_factory=list, role=READS)
    output: Path = option(help="the corpus file to write", role=WRITES)
    overwrite: bool = option(False, help="replace --output if it exists (never one of the inputs)")


@dataclass(kw_only=True)
class RunConfig(StoreChoice, TrackingChoice):
    """`bertbench run [WORKLOAD]`: run a workload's cases, each in its own process."""

    workload: str = option(
        "default", help="a workload YAML file or a built-in name (default: the main job)", positional=True
    )
    list_cases: bool = option(False, help="print the cases and exit (like ctest -N)", flag="--list")
    select: str | None = option(
        None, help="only cases matching this regular expression (and what they need)", flag="-k"
    )
    dry_run: bool = option(False, help="print each case's command line and exit")
    force: bool = option(False, help="rerun cases that finished before with the same config, code and data")
    wait: bool = option(False, help="when another run holds this workload's folder, wait for it (else exit 75)")
    oversubscribe: bool = option(False, help="allow a case more processes than this machine has cores")
    data_dir: Path | None = option(
        None, help="directory with squad/ and sst2/ (default: $BERTBENCH_DATA_DIR, ./data, ../shared/data)"
    )
    output_root: Path = option(Path("runs"), help="cases write to OUTPUT_ROOT/WORKLOAD/CASE")
    cache_dir: Path | None = option(None, help="cache root passed to every case")
    no_progress: bool = option(False, help="no progress bar")

    @property
    def show_progress(self) -> bool:
        """Progress bar on stderr unless --no-progress."""
        return not self.no_progress


@dataclass(kw_only=True)
class ReportConfig:
    """`bertbench report`: the KPI table (terminal, Markdown, CSV, JSON) and the HTML page, from one store or
    several (a fleet's machines side by side)."""

    store: tuple[Path, ...] = option(
        (),
        help="results store, repeatable, or a folder of stores (*.sqlite) read together; default "
        "${XDG_DATA_HOME:-~/.local/share}/bertbench/results.sqlite",
        parse=Path,
        repeat=True,
        role=STORE,
    )

    where: tuple[str, ...] = option(
        (), help="KEY=VALUE a run must match (repeatable), e.g. precision=int8", parse=key_value, repeat=True
    )
    last: int | None = option(None, help="only the newest N runs", parse=positive_int)
    workload: str | None = option(None, help="only the cases of this workload")
    format: str = option("table", help="output format", choices=("table", "markdown", "csv", "json"))
    output: Path | None = option(None, help="write the table to this file instead of stdout", role=WRITES)
    html: Path | None = option(None, help="also write a self-contained HTML report with plots here", role=WRITES)
    compare: tuple[str, ...] = option(
        (), help="A B: two run sets (uid, git SHA, hostname, KEY=VALUE or KEY~TEXT), ratios B/A"
    )
    include_failed: bool = option(False, help="also list failed and interrupted runs")
    overwrite: bool = option(False, help="replace an existing --output file (a page --html wrote is replaced anyway)")


@dataclass(kw_only=True)
class ResultsConfig(StoreChoice, TrackingChoice):
    """`bertbench results import DIR…` loads metrics.json files (searched recursively) into the store; `bertbench
    results merge STORE…` folds other machines' stores (files or folders of them) into it, each run once;
    `bertbench results push` logs the runs a tracking server did not take to it."""

    store: Path | None = option(
        None,
        help="the results store to import or merge into (default ${XDG_DATA_HOME:-~/.local/share}/bertbench/"
        "results.sqlite)",
        role=WRITES,
    )
    action: str = option(help="what to do with the store", choices=("import", "merge", "push"), positional=True)
    paths: list[Path] = option(
        default_factory=list,
        help="import: directories (searched recursively) or metrics.json files; merge: stores or folders of them",
        positional=True,
        role=READS,
    )


@dataclass(kw_only=True)
class ExportConfig(StoreChoice):
    """`bertbench export mlperf`: MLPerf Inference's submission tree from the runs in the store."""

    format: str = option(help="the layout to write", choices=("mlperf",), positional=True)
    output: Path = option(help="the folder to write (new or empty)", role=WRITES)
    system: str | None = option(
        None, help="system name, when the runs come from one machine (default: HOSTNAME_bertbench)", parse=identifier
    )
    division: str = option("open", help="MLPerf division", choices=("open", "closed"))
    submitter: str = option("bertbench", help="the submitter's name in the tree", parse=identifier)
    workload: str | None = option(None, help="only the runs of this workload")
    where: tuple[str, ...] = option(
        (), help="KEY=VALUE a run must match (repeatable), e.g. model=runs/squad", parse=key_value, repeat=True
    )
    system_facts: Path | None = option(
        None,
        help="a JSON object of system-description fields no machine can tell (cooling, memory configuration, …)",
        role=READS,
    )
    overwrite: bool = option(False, help="replace an earlier export in --output")
