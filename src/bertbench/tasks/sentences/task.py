"""The sentence tasks (TNEWS, MRPC, RTE, STS-B): one Task class, one instance per data set family, differing only
in how their file is read and which of GLUE's metrics they report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_text, sha256_file
from bertbench.models import BertForSequenceClassification, WordPieceTokenizer
from bertbench.tasks.labels import REGRESSION, SINGLE_LABEL, LabelSet, label_rows
from bertbench.tasks.paths import single_path
from bertbench.tasks.sentences import metrics
from bertbench.tasks.sentences.data import SentenceData, TsvLayout, read_json_lines, read_tsv
from bertbench.tasks.sentences.options import SentenceOptions

FEATURES_VERSION = 1


@dataclass(frozen=True)
class SentenceFamily:
    """What distinguishes one sentence task: its reader, whether it regresses a score, its metrics."""

    name: str
    read: Callable[[Path], SentenceData]
    metrics: tuple[str, ...]
    regression: bool = False
    positive_label: str | None = None  # the class whose F1 GLUE reports (MRPC: "1", a paraphrase)


def encode_samples(
    data: SentenceData, tokenizer: WordPieceTokenizer, max_seq_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """[CLS] a [SEP] (b [SEP]) per sample, segment 1 for b; a pair too long loses tokens from its longer side
    (transformers' `longest_first`). Returns ids, token types, lengths and how many samples were cut."""
    n = len(data.first)
    ids = np.full((n, max_seq_length), tokenizer.pad_id, dtype=np.int32)
    types = np.zeros((n, max_seq_length), dtype=np.int8)
    lengths = np.zeros(n, dtype=np.int32)
    firsts = [e.ids for e in tokenizer.encode_batch(data.first)]
    seconds = [e.ids for e in tokenizer.encode_batch(data.second)] if data.second is not None else None
    cut = 0
    for row in range(n):
        a = list(firsts[row])
        b = list(seconds[row]) if seconds is not None else None
        room = max_seq_length - (3 if b is not None else 2)
        if len(a) + len(b or []) > room:
            cut += 1
            while len(a) + len(b or []) > room:
                if b is not None and len(b) > len(a):
                    b.pop()
                else:
                    a.pop()
        seq = [tokenizer.cls_id, *a, tokenizer.sep_id]
        if b is not None:
            types[row, len(seq) : len(seq) + len(b) + 1] = 1
            seq += [*b, tokenizer.sep_id]
        ids[row, : len(seq)] = seq
        lengths[row] = len(seq)
    return ids, types, lengths, cut


@dataclass
class SentenceDataset:
    """Encoded samples padded to max_seq_length, with gold targets (class rows, or scores) when labelled."""

    data: SentenceData
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray | None
    labels: LabelSet
    truncated: int
    cache_hit: bool

    @property
    def num_samples(self) -> int:
        """Sentences or pairs."""
        return len(self.lengths)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 inputs of `rows`, padded or cut to `seq_len`."""
        ids = self.input_ids[rows, :seq_len].astype(np.int64)
        mask = (np.arange(seq_len)[None, :] < self.lengths[rows, None]).astype(np.int64)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": self.token_type_ids[rows, :seq_len].astype(np.int64),
        }

    def training_batch(self, rows: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        """Inputs padded to the batch's longest sample, with targets."""
        batch = self.model_inputs(rows, int(self.lengths[rows].max()))
        batch["labels"] = self.targets[rows]
        return batch

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""
        return {
            "data": str(self.data.path),
            "data_sha256": sha256_file(self.data.path),
            "num_examples": self.num_samples,
            "labelled": self.targets is not None,
            "pairs": self.data.second is not None,
            "num_labels": len(self.labels.names),
            "truncated_samples": self.truncated,
            "num_features": self.num_samples,
            "features_cache_hit": self.cache_hit,
        }


class SentenceTask:
    """Classification (any number of classes) or regression of one sentence or a pair, from the pooled [CLS]."""

    options_class = SentenceOptions
    head = BertForSequenceClassification
    outputs = ("logits",)
    per_token_outputs: tuple[str, ...] = ()

    def __init__(self, family: SentenceFamily) -> None:
        self.family = family
        self.name = family.name
        self.metrics = family.metrics
        self.primary_metric = family.metrics[0]
        self.regression = family.regression

    def data_labels(self, paths: Path | Sequence[Path]) -> LabelSet:
        """The labels a file holds, sorted (as transformers' run_glue orders them); one score for regression."""
        if self.family.regression:
            return LabelSet(("score",), REGRESSION)
        data = self.family.read(single_path(paths))
        if data.labels is None:
            raise BertbenchError(f"{data.path}: has no labels: a model's labels cannot be read from it")
        return LabelSet(tuple(sorted(set(data.labels))), SINGLE_LABEL)

    def _load(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: SentenceOptions,
        cache: Cache,
        labels: LabelSet | None,
        max_examples: int | None,
        training: bool,
    ) -> SentenceDataset:
        try:
            options.validate()
        except ValueError as exc:
            raise BertbenchError(f"feature options: {exc}") from None
        path = single_path(paths)
        data = self.family.read(path).head(max_examples)
        if training and data.labels is None:
            raise BertbenchError(f"{path}: has no labels (GLUE test layout): cannot train on it")
        if labels is None:  # not scored against a model's head (a calibration sample): the file's own labels
            labels = self.data_labels(path) if data.labels is not None else LabelSet(("unlabelled",))
        targets = None
        if data.labels is not None:
            targets = self._targets(data, labels)
        parts = {
            "task": self.name,
            "data_sha256": sha256_file(path),
            "max_examples": max_examples,
            "tokenizer": tokenizer.fingerprint(),
            "max_seq_length": options.max_seq_length,
            "features_version": FEATURES_VERSION,
            "tokenizers_version": tokenizers.__version__,
        }

        def build(directory: Path) -> None:
            ids, types, lengths, cut = encode_samples(data, tokenizer, options.max_seq_length)
            with open(directory / "features.npz", "wb") as handle:
                np.savez(handle, input_ids=ids, token_type_ids=types, lengths=lengths, truncated=np.int64(cut))

        entry, hit = cache.get_or_build("sentence-features", parts, build)
        with np.load(entry / "features.npz") as arrays:
            ids, types, lengths, cut = (arrays[k] for k in ("input_ids", "token_type_ids", "lengths", "truncated"))
        return SentenceDataset(data, ids, types, lengths, targets, labels, int(cut), hit)

    def _targets(self, data: SentenceData, labels: LabelSet) -> np.ndarray:
        if not self.family.regression:
            return np.asarray(label_rows(data.labels, labels, data.places), dtype=np.int64)
        scores = []
        for value, place in zip(data.labels, data.places, strict=True):
            try:
                scores.append(float(value))
            except ValueError:
                raise BertbenchError(f"{place}: score {value!r} is not a number") from None
        return np.asarray(scores, dtype=np.float32)

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: SentenceOptions,
        cache: Cache,
        max_examples: int | None = None,
        labels: LabelSet | None = None,
    ) -> SentenceDataset:
        """Samples of a file (labelled or not), gold labels as rows of `labels` (the model's)."""
        return self._load(paths, tokenizer, options, cache, labels, max_examples, training=False)

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: SentenceOptions,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
        labels: LabelSet | None = None,
    ) -> SentenceDataset:
        """Labelled samples (a file without labels is refused)."""
        return self._load(paths, tokenizer, options, cache, labels, max_examples, training=True)

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Class logits (or the score) are already small."""
        return outputs

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample cross-entropy of the classes, or squared error of the score (transformers' losses)."""
        if self.family.regression:
            return F.mse_loss(outputs[0].squeeze(-1).float(), batch["labels"].float(), reduction="none")
        return F.cross_entropy(outputs[0], batch["labels"], reduction="none")

    def score(
        self, dataset: SentenceDataset, outputs: dict[str, np.ndarray], options: SentenceOptions
    ) -> tuple[list[Any], dict[str, Any]]:
        """Logits -> (predicted labels as written in the data, or scores; GLUE's metrics as fractions)."""
        logits = outputs["logits"]
        if self.family.regression:
            predictions: list[Any] = [float(v) for v in logits[:, 0]]
        else:
            predictions = [dataset.labels.names[i] for i in logits.argmax(axis=1)]
        if dataset.targets is None:
            return predictions, {}
        gold = dataset.data.labels
        if self.family.regression:
            # the gold scores as written (float64), not the float32 training targets: GLUE's scorer reads the text
            return predictions, metrics.correlations(predictions, [float(v) for v in gold])
        scores: dict[str, Any] = {"accuracy": metrics.accuracy(predictions, gold)}
        if self.family.positive_label is not None:
            scores["f1"] = metrics.positive_f1(predictions, gold, self.family.positive_label)
        return predictions, scores

    def write_predictions(self, predictions: list[Any], output_dir: Path, dataset: SentenceDataset) -> Path:
        """predictions.jsonl: `{"index": i, "prediction": label or score}` a line, in file order."""
        path = output_dir / "predictions.jsonl"
        lines = (json.dumps({"index": i, "prediction": p}, ensure_ascii=False) for i, p in enumerate(predictions))
        atomic_write_text(path, "".join(f"{line}\n" for line in lines))
        return path


TNEWS = SentenceTask(SentenceFamily("tnews", lambda p: read_json_lines(p, "sentence", "label"), ("accuracy",)))
MRPC = SentenceTask(
    SentenceFamily(
        "mrpc",
        lambda p: read_tsv(p, TsvLayout(("#1 String", "#2 String"), "Quality")),
        ("f1", "accuracy"),
        positive_label="1",
    )
)
RTE = SentenceTask(
    SentenceFamily("rte", lambda p: read_tsv(p, TsvLayout(("sentence1", "sentence2"), "label")), ("accuracy",))
)
STSB = SentenceTask(
    SentenceFamily(
        "stsb",
        lambda p: read_tsv(p, TsvLayout(("sentence1", "sentence2"), "score")),
        ("pearson", "spearman"),
        regression=True,
    )
)
