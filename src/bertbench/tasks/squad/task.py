"""SQuAD glue: data + cached features, training batches and loss, scoring of raw model outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_json, sha256_file
from bertbench.models import BertForQuestionAnswering, WordPieceTokenizer
from bertbench.tasks.paths import single_path
from bertbench.tasks.squad.data import SquadData, load_squad
from bertbench.tasks.squad.features import (
    FEATURES_VERSION,
    FeatureParams,
    SquadFeatures,
    build_features,
    locate_answer,
)
from bertbench.tasks.squad.metrics import squad_v1_metrics, squad_v2_metrics
from bertbench.tasks.squad.options import SquadOptions
from bertbench.tasks.squad.postprocess import DecodeParams, decode_predictions


@dataclass
class SquadDataset:
    """Parsed examples with their windows."""

    data: SquadData
    features: SquadFeatures
    cache_hit: bool
    params: FeatureParams
    tokenizer: WordPieceTokenizer  # the answer-text rule of MLPerf re-tokenises answers

    @property
    def lengths(self) -> np.ndarray:
        """Real tokens per window (the batching planner reads this)."""
        return self.features.lengths

    @property
    def num_samples(self) -> int:
        """Windows (a SQuAD sample is one window, as in MLPerf)."""
        return len(self.features)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Model inputs of `rows`, padded to `seq_len`."""
        return self.features.model_inputs(rows, seq_len)

    def training_batch(self, rows: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        """Inputs padded to the longest row, plus start/end labels."""
        batch = self.model_inputs(rows, int(self.features.lengths[rows].max()))
        batch["start_positions"] = self.features.start_positions[rows].astype(np.int64)
        batch["end_positions"] = self.features.end_positions[rows].astype(np.int64)
        return batch

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""
        return {
            "data": str(self.data.path),
            "data_sha256": sha256_file(self.data.path),
            **self.data.report(),
            "num_features": self.num_samples,
            "features_cache_hit": self.cache_hit,
        }


def load_dataset(
    path: str | Path,
    tokenizer: WordPieceTokenizer,
    options: SquadOptions,
    cache: Cache,
    training: bool = False,
    max_examples: int | None = None,
) -> SquadDataset:
    """Read a SQuAD file and get its windows from the cache (built on a miss)."""
    try:
        options.validate()
    except ValueError as exc:
        raise BertbenchError(f"feature options: {exc}") from None
    params = FeatureParams(options.max_seq_length, options.doc_stride, options.max_query_length)
    data = load_squad(path, require_answers=True)
    if max_examples is not None:
        data.examples = data.examples[:max_examples]
    if training:
        # A gold span that cannot be found in its context would teach "no answer": drop those questions.
        kept = []
        for example in data.examples:
            if example.is_impossible or locate_answer(example) is not None:
                kept.append(example)
            else:
                data.note("unlocatable_answer", example.qid)
        data.examples = kept
    parts = {
        "data_sha256": sha256_file(data.path),
        "max_examples": max_examples,
        "training": training,
        "tokenizer": tokenizer.fingerprint(),
        "params": params.as_dict(),
        "features_version": FEATURES_VERSION,
        "tokenizers_version": tokenizers.__version__,
    }

    def build(directory: Path) -> None:
        features = build_features(data.examples, tokenizer, params)
        with open(directory / "features.npz", "wb") as handle:
            np.savez(handle, **features.arrays())

    entry, hit = cache.get_or_build("squad-features", parts, build)
    with np.load(entry / "features.npz") as arrays:
        features = SquadFeatures.from_arrays(dict(arrays))
    return SquadDataset(data, features, hit, params, tokenizer)


class SquadTask:
    """Extractive question answering (SQuAD v1.1, and v2.0 files with unanswerable questions)."""

    name = "squad"
    options_class = SquadOptions
    head = BertForQuestionAnswering
    outputs = ("start_logits", "end_logits")
    per_token_outputs = ("start_logits", "end_logits")
    primary_metric = "f1"
    metrics = ("exact_match", "f1")

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: SquadOptions,
        cache: Cache,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> SquadDataset:
        """Windows of every question of a SQuAD file (the first `max_examples` questions)."""
        return load_dataset(single_path(paths), tokenizer, options, cache, max_examples=max_examples)

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: SquadOptions,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> SquadDataset:
        """Windows with start/end labels; questions whose answer cannot be located are dropped (and counted)."""
        return load_dataset(single_path(paths), tokenizer, options, cache, training=True, max_examples=max_examples)

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Logits are kept whole (post-processing needs every position)."""
        return outputs

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample loss: mean of start and end cross-entropy (as BertForQuestionAnswering computes it)."""
        start_logits, end_logits = outputs
        start = F.cross_entropy(start_logits, batch["start_positions"], reduction="none")
        end = F.cross_entropy(end_logits, batch["end_positions"], reduction="none")
        return (start + end) / 2

    def score(
        self, dataset: SquadDataset, outputs: dict[str, np.ndarray], options: SquadOptions
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Raw logits -> (official-format predictions, official metrics); v2.0 data enables null answers."""
        version_2 = dataset.data.has_impossible
        rule = options.answer_text or "characters"
        decode = DecodeParams(options.n_best, options.max_answer_length, options.null_score_threshold, version_2, rule)
        predictions = decode_predictions(
            dataset.data.examples,
            dataset.features,
            outputs["start_logits"],
            outputs["end_logits"],
            decode,
            dataset.tokenizer,
        )
        metric = squad_v2_metrics if version_2 else squad_v1_metrics
        metrics = metric(dataset.data.examples, predictions)
        metrics.pop("total", None)
        # The threshold used is the option's value, which the record's config already carries.
        return predictions, {**metrics, "null_answers_enabled": version_2}

    def write_predictions(
        self, predictions: dict[str, str], output_dir: Path, dataset: SquadDataset | None = None
    ) -> Path:
        """predictions.json in the official format: {question_id: answer_text}."""
        path = output_dir / "predictions.json"
        atomic_write_json(path, predictions)
        return path


SQUAD = SquadTask()
