"""Masked-LM glue: cached pretraining sequences with per-epoch masks, a fixed-mask evaluation set, the loss and
mlm_accuracy (correctly predicted masked tokens / masked tokens, as MLPerf)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
import torch
import torch.nn.functional as F

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.models import BertForMaskedLM, BertForPreTraining, WordPieceTokenizer
from bertbench.tasks.mlm.corpus import corpus_fingerprint, read_documents
from bertbench.tasks.mlm.masking import IGNORE, MaskingParams, SpecialIds, mask_sequence
from bertbench.tasks.mlm.options import MlmOptions
from bertbench.tasks.mlm.sequences import Sequences, build_sequences
from bertbench.tasks.paths import path_list

SEQUENCES_VERSION = 1
EVAL_MASK_SEED = 12345  # the evaluation masks are drawn once, from this seed, whatever the run's --seed


def special_ids(tokenizer: WordPieceTokenizer) -> SpecialIds:
    """Ids the masking needs."""
    return SpecialIds(tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id, tokenizer.vocab_size)


def continuation_table(tokenizer: WordPieceTokenizer) -> np.ndarray:
    """is_continuation[id]: True for '##' word pieces (whole-word masking groups them with the word before)."""
    table = np.zeros(tokenizer.vocab_size, dtype=bool)
    for token, index in tokenizer.backend.get_vocab().items():
        table[index] = token.startswith("##")
    return table


def load_sequences(
    paths: list[Path], tokenizer: WordPieceTokenizer, max_seq_length: int, nsp: bool, seed: int, cache: Cache
) -> tuple[Sequences, bool]:
    """Training sequences of a corpus, built once and memory-mapped from the cache."""
    parts = {
        "corpus": corpus_fingerprint(paths),
        "tokenizer": tokenizer.fingerprint(),
        "max_seq_length": max_seq_length,
        "nsp": nsp,
        "seed": seed if nsp else None,  # packing without NSP is deterministic
        "version": SEQUENCES_VERSION,
        "tokenizers_version": tokenizers.__version__,
    }

    def build(directory: Path) -> None:
        sequences = build_sequences(read_documents(paths), tokenizer, max_seq_length, nsp, seed)
        for name, array in sequences.arrays().items():
            np.save(directory / f"{name}.npy", array)

    read_documents(paths)  # validate the files (one clear error) even when the cache has them
    entry, hit = cache.get_or_build("mlm-sequences", parts, build)
    arrays = {f.name: np.load(entry / f"{f.name}.npy", mmap_mode="r") for f in fields(Sequences)}
    return Sequences(**arrays), hit


def _batch_arrays(
    sequences: Sequences,
    rows: np.ndarray,
    masked: list[np.ndarray],
    positions: list[np.ndarray],
    labels: list[np.ndarray],
    max_predictions: int,
    seq_len: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    n = len(rows)
    ids = np.full((n, seq_len), pad_id, dtype=np.int64)
    types = np.zeros((n, seq_len), dtype=np.int64)
    mask = np.zeros((n, seq_len), dtype=np.int64)
    pos = np.zeros((n, max_predictions), dtype=np.int64)
    lab = np.full((n, max_predictions), IGNORE, dtype=np.int64)
    for i, row in enumerate(rows):
        length = len(masked[i])
        ids[i, :length] = masked[i]
        mask[i, :length] = 1
        types[i, sequences.segment_b_start[row] : length] = 1
        pos[i, : len(positions[i])] = positions[i]
        lab[i, : len(labels[i])] = labels[i]
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "masked_positions": pos,
        "masked_labels": lab,
    }


@dataclass
class MlmTrainSource:
    """Pretraining sequences; masks are drawn per (seed, epoch, row), so every epoch sees fresh masks and a
    resumed run draws exactly the masks it would have drawn."""

    sequences: Sequences
    masking: MaskingParams
    special: SpecialIds
    continuation: np.ndarray
    seed: int
    nsp: bool

    @property
    def num_samples(self) -> int:
        """Sequences."""
        return len(self.sequences)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence."""
        return self.sequences.lengths

    def describe(self) -> dict[str, Any]:
        """Data facts for records."""
        return {"num_train_sequences": self.num_samples}

    def training_batch(self, rows: np.ndarray, epoch: int) -> dict[str, np.ndarray]:
        """Masked inputs padded to the longest sequence, masked positions and their labels."""
        masked, positions, labels = [], [], []
        offsets = self.sequences.offsets
        for row in rows:
            tokens = np.asarray(self.sequences.tokens[offsets[row] : offsets[row + 1]])
            rng = np.random.default_rng([self.seed, epoch, int(row)])
            m, p, lab = mask_sequence(tokens, ~self.continuation[tokens], rng, self.masking, self.special)
            masked.append(m)
            positions.append(p)
            labels.append(lab)
        seq_len = max(len(m) for m in masked)
        batch = _batch_arrays(
            self.sequences, rows, masked, positions, labels, self.masking.max_predictions, seq_len, self.special.pad
        )
        if self.nsp:
            batch["nsp_labels"] = self.sequences.nsp_labels[rows].astype(np.int64)
        return batch


@dataclass
class MlmEvalDataset:
    """Held-out sequences with masks drawn once from EVAL_MASK_SEED: identical across runs and builds."""

    path: list[Path]
    input_ids: np.ndarray  # (n, L) masked, padded
    token_type_ids: np.ndarray
    lengths: np.ndarray
    masked_positions: np.ndarray  # (n, P)
    masked_labels: np.ndarray  # (n, P), IGNORE where unused
    cache_hit: bool
    max_seq_length: int

    @property
    def num_samples(self) -> int:
        """Sequences."""
        return len(self.lengths)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Inputs for `rows`, including the positions to decode."""
        return {
            "input_ids": self.input_ids[rows, :seq_len].astype(np.int64),
            "attention_mask": (np.arange(seq_len)[None, :] < self.lengths[rows, None]).astype(np.int64),
            "token_type_ids": self.token_type_ids[rows, :seq_len].astype(np.int64),
            "masked_positions": self.masked_positions[rows].astype(np.int64),
        }

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""
        return {
            "data": ",".join(str(p) for p in self.path),
            "num_samples_available": self.num_samples,
            "eval_mask_seed": EVAL_MASK_SEED,
            "features_cache_hit": self.cache_hit,
        }


def load_eval_set(
    paths: list[Path],
    tokenizer: WordPieceTokenizer,
    max_seq_length: int,
    masking: MaskingParams,
    cache: Cache,
    max_samples: int | None = None,
) -> MlmEvalDataset:
    """The fixed evaluation set of a held-out corpus (first `max_samples` sequences)."""
    parts = {
        "corpus": corpus_fingerprint(paths),
        "tokenizer": tokenizer.fingerprint(),
        "max_seq_length": max_seq_length,
        "masking": [masking.mask_prob, masking.max_predictions, masking.whole_word],
        "max_samples": max_samples,
        "seed": EVAL_MASK_SEED,
        "version": SEQUENCES_VERSION,
    }
    special = special_ids(tokenizer)

    def build(directory: Path) -> None:
        sequences = build_sequences(read_documents(paths), tokenizer, max_seq_length, False, EVAL_MASK_SEED)
        rows = np.arange(min(len(sequences), max_samples or len(sequences)))
        continuation = continuation_table(tokenizer)
        rng = np.random.default_rng(EVAL_MASK_SEED)
        masked, positions, labels = [], [], []
        for row in rows:
            tokens = sequences.tokens[sequences.offsets[row] : sequences.offsets[row + 1]]
            m, p, lab = mask_sequence(tokens, ~continuation[tokens], rng, masking, special)
            masked.append(m)
            positions.append(p)
            labels.append(lab)
        batch = _batch_arrays(
            sequences, rows, masked, positions, labels, masking.max_predictions, max_seq_length, special.pad
        )
        np.savez(
            directory / "eval.npz",
            input_ids=batch["input_ids"].astype(np.int32),
            token_type_ids=batch["token_type_ids"].astype(np.int8),
            lengths=sequences.lengths[rows],
            masked_positions=batch["masked_positions"].astype(np.int32),
            masked_labels=batch["masked_labels"].astype(np.int32),
        )

    read_documents(paths)
    entry, hit = cache.get_or_build("mlm-eval", parts, build)
    with np.load(entry / "eval.npz") as a:
        return MlmEvalDataset(
            list(paths),
            a["input_ids"],
            a["token_type_ids"],
            a["lengths"],
            a["masked_positions"],
            a["masked_labels"],
            hit,
            max_seq_length,
        )


class MlmTask:
    """Masked-LM (optionally with next-sentence prediction): pretraining sequences, a fixed evaluation set,
    mlm_accuracy."""

    name = "mlm"
    options_class = MlmOptions
    outputs = ("logits",)
    per_token_outputs: tuple[str, ...] = ()
    primary_metric = "mlm_accuracy"
    metrics = ("mlm_accuracy", "num_masked_tokens")

    def __init__(self, nsp: bool = False) -> None:
        self.nsp = nsp
        self.head = BertForPreTraining if nsp else BertForMaskedLM

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: MlmOptions,
        cache: Cache,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> MlmEvalDataset:
        """The fixed evaluation set of held-out corpora (its first `max_examples` sequences)."""
        _validate(options)
        return load_eval_set(path_list(paths), tokenizer, options.max_seq_length, options.masking, cache, max_examples)

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: MlmOptions,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
        labels: None = None,  # no label head: nothing to fit
    ) -> MlmTrainSource:
        """Packed sequences of the corpora; masks drawn per (seed, epoch, row) as batches are built."""
        _validate(options)
        sequences, _ = load_sequences(path_list(paths), tokenizer, options.max_seq_length, self.nsp, seed, cache)
        return MlmTrainSource(
            sequences, options.masking, special_ids(tokenizer), continuation_table(tokenizer), seed, self.nsp
        )

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep the argmax of the vocabulary logits per masked position (full logits would not fit in memory)."""
        return {"predicted_ids": outputs["logits"].argmax(axis=-1).astype(np.int32)}

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-sample loss: mean cross-entropy over the sample's masked tokens (+ NSP cross-entropy when present)."""
        logits, labels = outputs[0], batch["masked_labels"]
        token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE, reduction="none")
        counts = (labels != IGNORE).sum(dim=1).clamp(min=1)
        per_sample = token_loss.sum(dim=1) / counts
        if len(outputs) > 1 and "nsp_labels" in batch:
            per_sample = per_sample + F.cross_entropy(outputs[1], batch["nsp_labels"], reduction="none")
        return per_sample

    def score(
        self, dataset: MlmEvalDataset, outputs: dict[str, np.ndarray], options: MlmOptions
    ) -> tuple[None, dict[str, Any]]:
        """mlm_accuracy over every masked token of the evaluation set."""
        labels = dataset.masked_labels
        scored = labels != IGNORE
        correct = int(((outputs["predicted_ids"] == labels) & scored).sum())
        total = int(scored.sum())
        return None, {"mlm_accuracy": correct / total if total else None, "num_masked_tokens": total}

    def write_predictions(self, predictions: None, output_dir: Path, dataset: MlmEvalDataset) -> None:
        """Masked-LM evaluation has no predictions file (metrics.json holds the accuracy)."""
        return None


def _validate(options: MlmOptions) -> None:
    try:
        options.validate()
    except ValueError as exc:
        raise BertbenchError(f"feature options: {exc}") from None


MLM = MlmTask()
