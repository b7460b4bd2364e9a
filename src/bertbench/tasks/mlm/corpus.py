"""Plain-text corpora: documents separated by blank lines, split into sentences; and the corpus builder.

The builder turns the SQuAD contexts and SST-2 sentences of given files into such a corpus: each SQuAD context is
one document (one sentence per line), each SST-2 sentence a document of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bertbench.errors import BertbenchError
from bertbench.io_utils import atomic_write_text

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket) before whitespace and a
# capital letter, digit or opening quote. Good enough for Wikipedia prose; lines are never joined.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+(?=[A-Z0-9\"“‘(])")
_WORD = re.compile(r"\w")
# A piece ending in one of these (or in an initial such as "J.") does not end a sentence.
_ABBREVIATIONS = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "st.",
    "jr.",
    "sr.",
    "prof.",
    "gen.",
    "col.",
    "lt.",
    "sgt.",
    "capt.",
    "no.",
    "vol.",
    "vs.",
    "e.g.",
    "i.e.",
    "u.s.",
    "u.k.",
    "inc.",
    "co.",
    "corp.",
    "mt.",
    "ft.",
}


def split_sentences(text: str) -> list[str]:
    """Split one line of prose into sentences (abbreviations and initials do not end one)."""
    sentences: list[str] = []
    for piece in (p.strip() for p in _SENTENCE_END.split(text)):
        if not piece:
            continue
        last = sentences[-1].rsplit(None, 1)[-1].lower() if sentences else ""
        if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return sentences


def read_documents(paths: list[Path]) -> list[list[str]]:
    """Documents (lists of sentences) of the corpus files; an empty corpus or one without sentences is an error."""
    documents: list[list[str]] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise BertbenchError(f"{path}: file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BertbenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        if not text.strip():
            raise BertbenchError(f"{path}: empty corpus")
        found = 0
        for block in re.split(r"\n\s*\n", text):
            sentences = [s for line in block.splitlines() for s in split_sentences(line)]
            # A sentence needs at least one word character; lines of punctuation or symbols are not text.
            sentences = [s for s in sentences if _WORD.search(s)]
            if sentences:
                documents.append(sentences)
                found += 1
        if not found:
            raise BertbenchError(f"{path}: no complete sentence (no line holds a word)")
    return documents


def build_corpus(squad_files: list[Path], sst2_files: list[Path], output: Path) -> dict[str, int]:
    """Write a corpus from SQuAD contexts and SST-2 sentences; returns document and sentence counts."""
    from bertbench.tasks.squad.data import load_squad
    from bertbench.tasks.sst2.data import load_sst2

    documents: list[list[str]] = []
    for path in squad_files:
        contexts = dict.fromkeys(e.context for e in load_squad(path, require_answers=False).examples)
        documents.extend(split_sentences(" ".join(c.split())) for c in contexts)
    for path in sst2_files:
        documents.extend([s] for s in load_sst2(path).sentences)
    if not documents:
        raise BertbenchError("build-corpus: no input files given")
    atomic_write_text(output, "\n\n".join("\n".join(doc) for doc in documents) + "\n")
    return {"documents": len(documents), "sentences": sum(len(d) for d in documents)}


def corpus_fingerprint(paths: list[Path]) -> str:
    """Hash of the corpus files' contents (part of the cache key of anything built from them)."""
    from bertbench.io_utils import sha256_file

    return json.dumps([sha256_file(p) for p in paths])
