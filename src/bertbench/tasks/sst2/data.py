"""Read GLUE-format SST-2 TSV files: `sentence<TAB>label` with a header, or the test layout `index<TAB>sentence`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertbench.errors import BertbenchError

LABELLED_HEADER = ["sentence", "label"]
TEST_HEADER = ["index", "sentence"]


@dataclass
class Sst2Data:
    """The valid rows of a file; `labels` is None for the unlabelled test layout. `indices` number the rows as
    the file does: the test layout's own index column, else the row's position after the header."""

    path: Path
    sentences: list[str]
    indices: list[int]
    labels: list[int] | None
    problems: Counter = field(default_factory=Counter)
    problem_lines: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """Counts for metrics.json."""
        return {
            "num_examples": len(self.sentences),
            "data_problems": dict(self.problems),
            "data_problem_locations": self.problem_lines,
        }

    def note(self, kind: str, line: int) -> None:
        """Count one bad row and keep the first few line numbers."""
        self.problems[kind] += 1
        if len(self.problem_lines) < 10:
            self.problem_lines.append(f"line {line}: {kind}")


def load_sst2(path: str | Path) -> Sst2Data:
    """Parse a SST-2 TSV; bad rows are counted with line numbers, a file with no valid row is an error."""
    path = Path(path)
    if not path.is_file():
        raise BertbenchError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise BertbenchError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not lines:
        raise BertbenchError(f"{path}: empty file")
    header = [h.strip() for h in lines[0].split("\t")]
    if header not in (LABELLED_HEADER, TEST_HEADER):
        raise BertbenchError(
            f"{path}: line 1: expected the header 'sentence<TAB>label' (or 'index<TAB>sentence' for the GLUE "
            f"test layout), found {lines[0][:60]!r}"
        )
    labelled = header == LABELLED_HEADER
    data = Sst2Data(path, [], [], [] if labelled else None)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            data.note("wrong_field_count", number)
            continue
        if labelled:
            sentence, label = fields
            if label.strip() not in ("0", "1"):
                data.note("bad_label", number)
                continue
        else:
            index, sentence = fields
            if not index.strip().isdigit():
                data.note("bad_index", number)
                continue
        if not sentence.strip():
            data.note("empty_sentence", number)
            continue
        data.sentences.append(sentence.strip())
        if labelled:
            # The row's position among the file's data rows (0 = the line after the header), so that a skipped
            # row leaves a gap instead of shifting every later prediction onto the wrong sentence.
            data.indices.append(number - 2)
            data.labels.append(int(label))
        else:
            data.indices.append(int(index))
    if not data.sentences:
        summary = ", ".join(f"{n} {kind}" for kind, n in data.problems.items()) or "no rows"
        raise BertbenchError(f"{path}: no valid rows ({summary}; first: {', '.join(data.problem_lines[:3])})")
    return data
