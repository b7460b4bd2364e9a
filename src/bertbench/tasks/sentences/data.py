"""Readers of sentence-task files: GLUE's TSVs (read as GLUE ships them: no quote processing, an optional
byte-order mark) and CLUE's JSON lines (TNEWS). Any malformed row is one error naming the file and the line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bertbench.errors import BertbenchError


@dataclass
class SentenceData:
    """A file's samples in file order: first (and second) texts, gold labels as written (None when unlabelled)."""

    path: Path
    first: list[str]
    second: list[str] | None
    labels: list[str] | None
    lines: list[int]  # each sample's line in the file, for messages

    @property
    def places(self) -> list[str]:
        """`file: line N` of every sample."""
        return [f"{self.path}: line {line}" for line in self.lines]

    def head(self, count: int | None) -> SentenceData:
        """The first `count` samples (all of them for None)."""
        if count is None:
            return self
        cut = slice(0, count)
        return SentenceData(
            self.path,
            self.first[cut],
            self.second[cut] if self.second is not None else None,
            self.labels[cut] if self.labels is not None else None,
            self.lines[cut],
        )


@dataclass(frozen=True)
class TsvLayout:
    """Which GLUE TSV columns hold the texts and the label."""

    texts: tuple[str, ...]
    label: str


def _text(path: Path) -> str:
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BertbenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_tsv(path: str | Path, layout: TsvLayout) -> SentenceData:
    """A GLUE TSV: a header naming the columns, one sample a line, fields split on tabs only (MRPC's quotes are
    text). A file without the label column is GLUE's unlabelled test layout."""
    path = Path(path)
    lines = _text(path).split("\n")
    header = [name.strip() for name in lines[0].rstrip("\r").split("\t")]
    missing = [name for name in layout.texts if name not in header]
    if missing:
        raise BertbenchError(f"{path}: line 1: no column {missing[0]!r} in the header ({', '.join(header)})")
    columns = [header.index(name) for name in layout.texts]
    label = header.index(layout.label) if layout.label in header else None
    data = SentenceData(path, [], [] if len(columns) > 1 else None, [] if label is not None else None, [])
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise BertbenchError(f"{path}: line {number}: {len(fields)} fields, the header has {len(header)}")
        texts = [fields[c].strip() for c in columns]
        data.first.append(texts[0])
        if data.second is not None:
            data.second.append(texts[1])
        if data.labels is not None:
            value = fields[label].strip()
            if not value:
                raise BertbenchError(f"{path}: line {number}: empty {layout.label!r}")
            data.labels.append(value)
        data.lines.append(number)
    if not data.first:
        raise BertbenchError(f"{path}: no samples")
    return data


def read_json_lines(path: str | Path, text_key: str, label_key: str) -> SentenceData:
    """CLUE's JSON lines (TNEWS): one object a line with the text and (when labelled) the label."""
    path = Path(path)
    data = SentenceData(path, [], None, None, [])
    for number, line in enumerate(_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BertbenchError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_key), str):
            raise BertbenchError(f"{path}: line {number}: no {text_key!r} text")
        if data.labels is None and not data.first and label_key in row:
            data.labels = []
        if data.labels is not None:
            if label_key not in row:
                raise BertbenchError(f"{path}: line {number}: no {label_key!r}, unlike the lines before")
            data.labels.append(str(row[label_key]))
        data.first.append(row[text_key])
        data.lines.append(number)
    if not data.first:
        raise BertbenchError(f"{path}: no samples")
    return data
