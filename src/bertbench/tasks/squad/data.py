"""Read and validate SQuAD v1.1 / v2.0 files in the official JSON format."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError


@dataclass
class SquadExample:
    """One question on one context, with its gold answers (empty and `is_impossible` for v2.0 no-answer)."""

    qid: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]
    is_impossible: bool = False
    title: str = ""

    @property
    def answer_start_ok(self) -> bool:
        """True when the first answer's `answer_start` points at its text in the context."""
        if not self.answers:
            return True
        start = self.answer_starts[0]
        return self.context[start : start + len(self.answers[0])] == self.answers[0]


@dataclass
class SquadData:
    """The usable examples of a file, and what was wrong with the rest."""

    path: Path
    version: str
    examples: list[SquadExample]
    problems: Counter = field(default_factory=Counter)
    problem_samples: list[str] = field(default_factory=list)

    @property
    def has_impossible(self) -> bool:
        """True for SQuAD v2.0 data (some questions have no answer)."""
        return any(e.is_impossible for e in self.examples)

    def report(self) -> dict[str, Any]:
        """Counts for metrics.json and the console."""
        return {
            "data_version": self.version,
            "num_examples": len(self.examples),
            "data_problems": dict(self.problems),
            "data_problem_locations": self.problem_samples,
        }

    def note(self, kind: str, where: str) -> None:
        """Count one problem and keep the first few locations for the report."""
        self.problems[kind] += 1
        if len(self.problem_samples) < 5:
            self.problem_samples.append(f"{where}: {kind}")


def _malformed(path: Path, where: str, what: str) -> BertbenchError:
    return BertbenchError(f"{path}: malformed SQuAD file at {where}: {what}")


def load_squad(path: str | Path, require_answers: bool = True) -> SquadData:
    """Parse a SQuAD JSON file. Structural errors raise one clear line; bad questions are counted and skipped.

    `require_answers` skips answerable-looking questions without answers (needed for training and scoring).
    """
    path = Path(path)
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BertbenchError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise BertbenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise BertbenchError(f"{path}: JSON nested too deeply to be a SQuAD file") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise _malformed(path, "top level", "expected an object with a 'data' list")
    data = SquadData(path, str(raw.get("version", "")), [])
    seen: set[str] = set()
    for a, article in enumerate(raw["data"]):
        where_a = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise _malformed(path, where_a, "expected an object with a 'paragraphs' list")
        for p, paragraph in enumerate(article["paragraphs"]):
            where_p = f"{where_a}.paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise _malformed(path, where_p, "expected an object with a 'qas' list")
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                for q in range(len(paragraph["qas"])):
                    data.note("empty_context", f"{where_p}.qas[{q}]")
                continue
            for q, qa in enumerate(paragraph["qas"]):
                example = _parse_question(data, qa, f"{where_p}.qas[{q}]", context, article, require_answers)
                if example is None:
                    continue
                if example.qid in seen:
                    data.note("duplicate_id", f"{where_p}.qas[{q}]")
                    continue
                seen.add(example.qid)
                data.examples.append(example)
    if not data.examples:
        raise BertbenchError(f"{path}: no valid questions ({_summary(data)})")
    if data.has_impossible and not data.version:
        data.version = "v2.0"
    data.version = data.version or "v1.1"
    return data


def _summary(data: SquadData) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in data.problems.items()) or "the file has none"


def _parse_question(
    data: SquadData, qa: Any, where: str, context: str, article: dict, require_answers: bool
) -> SquadExample | None:
    if not isinstance(qa, dict):
        data.note("not_an_object", where)
        return None
    qid, question = qa.get("id"), qa.get("question")
    if not isinstance(qid, str | int) or not isinstance(question, str) or not question.strip():
        data.note("missing_field", where)
        return None
    impossible = bool(qa.get("is_impossible", False))
    answers_raw = qa.get("answers", [])
    if not isinstance(answers_raw, list):
        data.note("missing_field", where)
        return None
    texts: list[str] = []
    starts: list[int] = []
    for answer in answers_raw:
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            data.note("missing_field", where)
            return None
        start = answer.get("answer_start")
        texts.append(answer["text"])
        starts.append(start if isinstance(start, int) else -1)
    if impossible:
        texts, starts = [], []
    elif require_answers and not texts:
        data.note("no_answer", where)
        return None
    example = SquadExample(str(qid), question, context, texts, starts, impossible, str(article.get("title", "")))
    if not example.answer_start_ok:
        # Kept for scoring (metrics read answer texts only); training re-locates or drops the span.
        data.note("answer_start_mismatch", where)
    return example
