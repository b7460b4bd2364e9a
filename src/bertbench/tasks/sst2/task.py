"""SST-2 glue: cached features, training batches and loss, accuracy and the predictions file."""

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
from bertbench.io_utils import atomic_write_text, sha256_file
from bertbench.models import BertForSequenceClassification, WordPieceTokenizer
from bertbench.tasks.paths import single_path
from bertbench.tasks.sst2.data import Sst2Data, load_sst2
from bertbench.tasks.sst2.options import Sst2Options

FEATURES_VERSION = 1


@dataclass
class Sst2Dataset:
    """Tokenised sentences ([CLS] sentence [SEP]) padded to max_seq_length, with their lengths and labels."""

    data: Sst2Data
    input_ids: np.ndarray  # (n, max_seq_length) int32
    lengths: np.ndarray  # (n,) int32
    labels: np.ndarray | None
    max_seq_length: int
    cache_hit: bool

    @property
    def num_samples(self) -> int:
        """Sentences."""
        return len(self.lengths)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 inputs of `rows` padded (or cut) to `seq_len`; one segment, so token types are 0."""
        ids = self.input_ids[rows, :seq_len].astype(np.int64)
        mask = (np.arange(seq_len)[None, :] < self.lengths[rows, None]).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def training_batch(self, rows: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        """Inputs padded to the longest sentence of the batch (dynamic padding), plus labels."""
        batch = self.model_inputs(rows, int(self.lengths[rows].max()))
        batch["labels"] = self.labels[rows].astype(np.int64)
        return batch

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""
        return {
            "data": str(self.data.path),
            "data_sha256": sha256_file(self.data.path),
            **self.data.report(),
            "labelled": self.labels is not None,
            "truncated_sentences": int((self.lengths == self.max_seq_length).sum()),
            "num_features": self.num_samples,
            "features_cache_hit": self.cache_hit,
        }


def load_dataset(
    path: str | Path,
    tokenizer: WordPieceTokenizer,
    options: Sst2Options,
    cache: Cache,
    training: bool = False,
    max_examples: int | None = None,
) -> Sst2Dataset:
    """Read a SST-2 TSV and get its token ids from the cache (built on a miss)."""
    try:
        options.validate()
    except ValueError as exc:
        raise BertbenchError(f"feature options: {exc}") from None
    data = load_sst2(path)
    if training and data.labels is None:
        raise BertbenchError(f"{data.path}: has no labels (GLUE test layout): cannot train on it")
    if max_examples is not None:
        data.sentences, data.indices = data.sentences[:max_examples], data.indices[:max_examples]
        data.labels = data.labels[:max_examples] if data.labels is not None else None
    length = options.max_seq_length
    parts = {
        "data_sha256": sha256_file(data.path),
        "max_examples": max_examples,
        "tokenizer": tokenizer.fingerprint(),
        "max_seq_length": length,
        "features_version": FEATURES_VERSION,
        "tokenizers_version": tokenizers.__version__,
    }

    def build(directory: Path) -> None:
        ids = np.full((len(data.sentences), length), tokenizer.pad_id, dtype=np.int32)
        lengths = np.zeros(len(data.sentences), dtype=np.int32)
        for row, encoding in enumerate(tokenizer.encode_batch(data.sentences)):
            seq = [tokenizer.cls_id, *encoding.ids[: length - 2], tokenizer.sep_id]
            ids[row, : len(seq)] = seq
            lengths[row] = len(seq)
        with open(directory / "features.npz", "wb") as handle:
            np.savez(handle, input_ids=ids, lengths=lengths)

    entry, hit = cache.get_or_build("sst2-features", parts, build)
    with np.load(entry / "features.npz") as arrays:
        ids, lengths = arrays["input_ids"], arrays["lengths"]
    labels = np.asarray(data.labels, dtype=np.int64) if data.labels is not None else None
    return Sst2Dataset(data, ids, lengths, labels, length, hit)


class Sst2Task:
    """Binary sentence sentiment (GLUE SST-2), from the pooled [CLS] representation."""

    name = "sst2"
    options_class = Sst2Options
    head = BertForSequenceClassification
    outputs = ("logits",)
    per_token_outputs: tuple[str, ...] = ()
    primary_metric = "accuracy"
    metrics = ("accuracy",)

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: Sst2Options,
        cache: Cache,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> Sst2Dataset:
        """Sentences of a GLUE TSV (labelled or test layout)."""
        return load_dataset(single_path(paths), tokenizer, options, cache, max_examples=max_examples)

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: Sst2Options,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> Sst2Dataset:
        """Labelled sentences (a file without labels is refused)."""
        return load_dataset(single_path(paths), tokenizer, options, cache, training=True, max_examples=max_examples)

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Class logits are already small."""
        return outputs

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample cross-entropy of the class logits."""
        return F.cross_entropy(outputs[0], batch["labels"], reduction="none")

    def score(
        self, dataset: Sst2Dataset, outputs: dict[str, np.ndarray], options: Sst2Options
    ) -> tuple[list[int], dict[str, Any]]:
        """Class logits -> (predicted labels in input order, accuracy in 0-1 as GLUE reports it)."""
        predictions = outputs["logits"].argmax(axis=1).astype(int).tolist()
        if dataset.labels is None:
            return predictions, {}
        accuracy = float((np.asarray(predictions) == dataset.labels).mean())
        return predictions, {"accuracy": accuracy}

    def write_predictions(self, predictions: list[int], output_dir: Path, dataset: Sst2Dataset) -> Path:
        """predictions.tsv: `index<TAB>prediction` with a header (GLUE submission layout)."""
        path = output_dir / "predictions.tsv"
        rows = "".join(f"{index}\t{label}\n" for index, label in zip(dataset.data.indices, predictions, strict=True))
        atomic_write_text(path, "index\tprediction\n" + rows)
        return path


SST2 = Sst2Task()
