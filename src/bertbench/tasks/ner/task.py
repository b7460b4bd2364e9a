"""NER glue: cached windows, training batches and loss, entity scores and the predictions file in the input's own
format (CoNLL columns with gold and predicted tags; CLUENER JSON lines with predicted spans)."""

from __future__ import annotations

import json
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
from bertbench.models import BertForTokenClassification, WordPieceTokenizer
from bertbench.tasks.labels import LabelSet, label_rows
from bertbench.tasks.ner.data import CLUENER, NerData, label_order, read_ner
from bertbench.tasks.ner.features import IGNORED, Windows, build_windows
from bertbench.tasks.ner.metrics import entities, entity_scores
from bertbench.tasks.ner.options import NerOptions
from bertbench.tasks.paths import single_path

FEATURES_VERSION = 1


@dataclass
class NerDataset:
    """A file's sentences and their windows (the samples a model sees)."""

    data: NerData
    windows: Windows
    labels: LabelSet
    cache_hit: bool

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of each window."""
        return self.windows.lengths

    @property
    def num_samples(self) -> int:
        """Windows."""
        return len(self.windows.lengths)

    def model_inputs(self, rows: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """int64 inputs of `rows`, padded or cut to `seq_len`; one segment."""
        ids = self.windows.input_ids[rows, :seq_len].astype(np.int64)
        mask = (np.arange(seq_len)[None, :] < self.lengths[rows, None]).astype(np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def training_batch(self, rows: np.ndarray, epoch: int = 0) -> dict[str, np.ndarray]:
        """Inputs padded to the batch's longest window, with each position's tag row (IGNORED off first pieces)."""
        seq_len = int(self.lengths[rows].max())
        batch = self.model_inputs(rows, seq_len)
        batch["labels"] = self.windows.label_ids[rows, :seq_len].astype(np.int64)
        return batch

    def describe(self) -> dict[str, Any]:
        """Data facts for metrics.json."""
        per_sentence = np.bincount(self.windows.sentence_of, minlength=len(self.data.sentences))
        return {
            "data": str(self.data.path),
            "data_sha256": sha256_file(self.data.path),
            "data_format": self.data.format,
            "num_examples": len(self.data.sentences),
            "labelled": self.data.labelled,
            "num_labels": len(self.labels.names),
            "num_features": self.num_samples,
            "split_sentences": int((per_sentence > 1).sum()),
            "words_without_pieces": self.windows.words_without_pieces,
            "overlapping_spans": self.data.overlapping_spans,
            "features_cache_hit": self.cache_hit,
        }


class NerTask:
    """Named entities as BIO token tags on the encoder's last layer."""

    name = "ner"
    options_class = NerOptions
    head = BertForTokenClassification
    outputs = ("tags",)  # what reduce_outputs keeps (and LoadGen's accuracy log holds): the tag row per token
    per_token_outputs = ("tags",)
    primary_metric = "f1"
    # metrics.json's top-level `precision` is the run's numeric precision (fp32, int8…) since the first record:
    # the entity scores are `entity_precision`/`entity_recall` there, and precision/recall/f1 under `entities`.
    metrics = ("f1", "entity_precision", "entity_recall")
    regression = False

    def data_labels(self, paths: Path | Sequence[Path]) -> LabelSet:
        """The tags a labelled file uses: O, then each type's B- and I- (and E-, S-) tags."""
        data = read_ner(single_path(paths))
        if not data.labelled:
            raise BertbenchError(f"{data.path}: has no tags: a model's labels cannot be read from it")
        return LabelSet(label_order(data.tag_set()))

    def _load(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: NerOptions,
        cache: Cache,
        labels: LabelSet | None,
        max_examples: int | None,
        training: bool,
    ) -> NerDataset:
        try:
            options.validate()
        except ValueError as exc:
            raise BertbenchError(f"feature options: {exc}") from None
        path = single_path(paths)
        data = read_ner(path)
        if training and not data.labelled:
            raise BertbenchError(f"{path}: has no tags: cannot train on it")
        data.sentences = data.sentences[:max_examples] if max_examples is not None else data.sentences
        if labels is None:  # not scored against a model's head (a calibration sample): the file's own tags
            labels = LabelSet(label_order(data.tag_set()))
        tag_rows = None
        if data.labelled:
            tag_rows = [label_rows(s.tags, labels, [f"{path}: line {s.line}"] * len(s.tags)) for s in data.sentences]
        parts = {
            "data_sha256": sha256_file(path),
            "max_examples": max_examples,
            "labels": list(labels.names),
            "tokenizer": tokenizer.fingerprint(),
            **options.as_dict(),
            "features_version": FEATURES_VERSION,
            "tokenizers_version": tokenizers.__version__,
        }

        def build(directory: Path) -> None:
            pieces = tokenizer.encode_words([s.words for s in data.sentences])
            windows = build_windows(
                pieces,
                tag_rows,
                options.max_seq_length,
                options.stride,
                tokenizer.cls_id,
                tokenizer.sep_id,
                tokenizer.pad_id,
            )
            with open(directory / "windows.npz", "wb") as handle:
                np.savez(handle, **{k: np.asarray(v) for k, v in vars(windows).items()})

        entry, hit = cache.get_or_build("ner-windows", parts, build)
        with np.load(entry / "windows.npz") as arrays:
            windows = Windows(**{k: arrays[k] for k in arrays.files})
        windows.words_without_pieces = int(windows.words_without_pieces)
        return NerDataset(data, windows, labels, hit)

    def load_eval_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: NerOptions,
        cache: Cache,
        max_examples: int | None = None,
        labels: LabelSet | None = None,
    ) -> NerDataset:
        """Windows of a file (tagged or not), gold tags as rows of `labels` (the model's)."""
        return self._load(paths, tokenizer, options, cache, labels, max_examples, training=False)

    def load_train_data(
        self,
        paths: Path | Sequence[Path],
        tokenizer: WordPieceTokenizer,
        options: NerOptions,
        cache: Cache,
        seed: int,
        max_examples: int | None = None,
        labels: LabelSet | None = None,
    ) -> NerDataset:
        """Tagged windows (an untagged file is refused)."""
        return self._load(paths, tokenizer, options, cache, labels, max_examples, training=True)

    def reduce_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The most likely tag row of every token (float32, so it travels as logits do)."""
        return {"tags": outputs["logits"].argmax(axis=-1).astype(np.float32)}

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the labelled tokens; per sample, scaled so that the batch mean is the mean over the
        batch's labelled tokens (transformers' loss) rather than a mean of per-window means."""
        logits, labels = outputs[0], batch["labels"]
        per_token = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORED, reduction="none")
        counted = (labels != IGNORED).sum().clamp(min=1)
        return per_token.sum(dim=1) * labels.shape[0] / counted

    def predicted_tags(self, dataset: NerDataset, tags: np.ndarray) -> list[list[str]]:
        """Every word's predicted tag, from the window that decides it (O for words without pieces)."""
        names = dataset.labels.names
        predicted = [["O"] * len(s.words) for s in dataset.data.sentences]
        windows = dataset.windows
        rows, positions = np.nonzero(windows.word_of >= 0)
        for row, position in zip(rows.tolist(), positions.tolist(), strict=True):
            sentence = predicted[windows.sentence_of[row]]
            sentence[windows.word_of[row, position]] = names[int(tags[row, position])]
        return predicted

    def score(
        self, dataset: NerDataset, outputs: dict[str, np.ndarray], options: NerOptions
    ) -> tuple[list[list[str]], dict[str, Any]]:
        """Tag rows -> (predicted tags per word; entity-level precision, recall, F1 as the format's own scorer)."""
        predicted = self.predicted_tags(dataset, outputs["tags"])
        if not dataset.data.labelled:
            return predicted, {}
        sentences = dataset.data.sentences
        if dataset.data.format == CLUENER:
            gold = [s.spans or set() for s in sentences]
            scoring = "cluener2020 spans"
        else:
            gold = [entities(s.tags) for s in sentences]
            scoring = "conlleval"
        scores = entity_scores(gold, [entities(tags) for tags in predicted])
        micro = {k: scores[k] for k in ("precision", "recall", "f1")}
        return predicted, {
            "f1": scores["f1"],
            "entity_precision": scores["precision"],
            "entity_recall": scores["recall"],
            "entities": {**micro, "num_entities": scores["num_entities"], "scoring": scoring},
            "per_type": scores["per_type"],
        }

    def write_predictions(self, predictions: list[list[str]], output_dir: Path, dataset: NerDataset) -> Path:
        """CoNLL input: predictions.conll (`token<TAB>gold<TAB>predicted`, blank lines between sentences, as
        conlleval reads it; `token<TAB>predicted` for untagged input); CLUENER input: predictions.json (the text
        with predicted spans, one object a line)."""
        sentences = dataset.data.sentences
        if dataset.data.format == CLUENER:
            path = output_dir / "predictions.json"
            lines = []
            for sentence, tags in zip(sentences, predictions, strict=True):
                label: dict[str, dict[str, list[list[int]]]] = {}
                for kind, start, end in sorted(entities(tags), key=lambda s: (s[1], s[2], s[0])):
                    mention = sentence.text[start : end + 1]
                    label.setdefault(kind, {}).setdefault(mention, []).append([start, end])
                lines.append(json.dumps({**sentence.extra, "text": sentence.text, "label": label}, ensure_ascii=False))
            atomic_write_text(path, "".join(f"{line}\n" for line in lines))
            return path
        path = output_dir / "predictions.conll"
        blocks = []
        for sentence, tags in zip(sentences, predictions, strict=True):
            # an untagged input has no gold column to repeat: `token<TAB>predicted`
            columns = [sentence.words, *([sentence.tags] if sentence.tags else []), tags]
            blocks.append("".join("\t".join(row) + "\n" for row in zip(*columns, strict=True)))
        atomic_write_text(path, "\n".join(blocks))
        return path


NER = NerTask()
