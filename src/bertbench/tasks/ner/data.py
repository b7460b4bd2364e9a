"""Readers of NER files, the format told by the content: CLUENER2020's JSON lines (`text` and span labels with
inclusive character offsets; every character is a word) or CoNLL columns (`token<TAB>tag`, a blank line between
sentences; the tag is the last column). Malformed input is one error naming the file and the line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError

CLUENER, CONLL = "cluener", "conll"
Span = tuple[str, int, int]  # (type, first word, last word), inclusive as CLUENER writes it


@dataclass
class Sentence:
    """One sentence: its words, gold BIO tags, and (CLUENER) its text and gold spans, nested ones included."""

    words: list[str]
    tags: list[str] | None
    line: int
    text: str | None = None
    spans: set[Span] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # CLUENER keys other than text and label (e.g. `id`)


@dataclass
class NerData:
    """A file's sentences in file order."""

    path: Path
    format: str
    sentences: list[Sentence]
    overlapping_spans: int = 0  # CLUENER spans inside others: scored, but not taggable in BIO

    @property
    def labelled(self) -> bool:
        """Whether gold tags are present."""
        return self.sentences[0].tags is not None

    def tag_set(self) -> set[str]:
        """Every gold tag in the file."""
        return {tag for s in self.sentences for tag in s.tags or ()}


def read_ner(path: str | Path) -> NerData:
    """Read a CLUENER JSON-lines or CoNLL file (told apart by its first non-blank character)."""
    path = Path(path)
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BertbenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    data = _read_cluener(path, text) if text.lstrip().startswith("{") else _read_conll(path, text)
    if not data.sentences:
        raise BertbenchError(f"{path}: no sentences")
    return data


def _read_conll(path: Path, text: str) -> NerData:
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start, labelled = 0, None
    lines = text.split("\n")
    for number, raw in enumerate([*lines, ""], start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            if words:
                sentences.append(Sentence(words, tags if labelled else None, start))
            words, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f for f in fields if f != ""]
        if labelled is None:
            labelled = len(fields) > 1
        if labelled and len(fields) < 2:
            raise BertbenchError(f"{path}: line {number}: a token without a tag ({line.strip()[:40]!r})")
        if not labelled and len(fields) > 1:
            raise BertbenchError(f"{path}: line {number}: a tag column, unlike the lines before")
        if not words:
            start = number
        words.append(fields[0])
        if labelled:
            tag = fields[-1]
            if tag != "O" and (len(tag) < 3 or tag[1] != "-" or tag[0] not in "BIES"):
                raise BertbenchError(f"{path}: line {number}: tag {tag!r} is not O or B-/I-/E-/S-TYPE")
            tags.append(tag)
    return NerData(path, CONLL, sentences)


def _read_cluener(path: Path, text: str) -> NerData:
    data = NerData(path, CLUENER, [])
    labelled = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BertbenchError(f"{path}: line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise BertbenchError(f"{path}: line {number}: no 'text'")
        if labelled is None:
            labelled = "label" in row
        if labelled != ("label" in row):
            raise BertbenchError(f"{path}: line {number}: {'no' if labelled else 'a'} 'label', unlike the lines before")
        chars = list(row["text"])
        extra = {k: v for k, v in row.items() if k not in ("text", "label")}
        if not labelled:
            data.sentences.append(Sentence(chars, None, number, row["text"], None, extra))
            continue
        spans = _spans(row["label"], row["text"], f"{path}: line {number}")
        tags, overlaps = spans_to_tags(spans, len(chars))
        data.overlapping_spans += overlaps
        data.sentences.append(Sentence(chars, tags, number, row["text"], spans, extra))
    return data


def _spans(label: Any, text: str, where: str) -> set[Span]:
    """CLUENER's `{type: {mention: [[start, end], ...]}}` -> spans, each checked against the text."""
    if not isinstance(label, dict):
        raise BertbenchError(f"{where}: 'label' is not an object of types")
    spans: set[Span] = set()
    for kind, mentions in label.items():
        if not isinstance(mentions, dict):
            raise BertbenchError(f"{where}: type {kind!r}: not an object of mentions")
        for mention, places in mentions.items():
            if not isinstance(places, list):
                raise BertbenchError(f"{where}: {kind} {mention!r}: offsets are not a list")
            for place in places:
                ok = isinstance(place, list) and len(place) == 2 and all(type(v) is int for v in place)
                if not ok or not 0 <= place[0] <= place[1] < len(text):
                    raise BertbenchError(
                        f"{where}: {kind} {mention!r}: span {place} lies outside the text ({len(text)} characters)"
                    )
                if text[place[0] : place[1] + 1] != mention:
                    raise BertbenchError(
                        f"{where}: {kind} {mention!r}: span {place} covers {text[place[0] : place[1] + 1]!r}"
                    )
                spans.add((kind, place[0], place[1]))
    return spans


def spans_to_tags(spans: set[Span], length: int) -> tuple[list[str], int]:
    """BIO tags of `length` words; a span overlapping one already tagged (longer, then earlier, first) stays
    untagged and is counted. Returns the tags and that count."""
    tags = ["O"] * length
    overlaps = 0
    for kind, start, end in sorted(spans, key=lambda s: (-(s[2] - s[1]), s[1], s[0])):
        if any(tag != "O" for tag in tags[start : end + 1]):
            overlaps += 1
            continue
        tags[start] = f"B-{kind}"
        for i in range(start + 1, end + 1):
            tags[i] = f"I-{kind}"
    return tags, overlaps


def label_order(tags: set[str]) -> tuple[str, ...]:
    """Tag names in head-row order: O, then each type's tags (B, I, E, S) by type name."""
    typed = sorted((t for t in tags if t != "O"), key=lambda t: (t[2:], "BIES".index(t[0])))
    return ("O", *typed)
