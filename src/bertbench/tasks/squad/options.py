"""SQuAD's options: windowing and answer decoding (MLPerf inference defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from bertbench.cliargs import finite_float, option, positive_int

ANSWER_TEXT_RULES = ("characters", "mlperf")


@dataclass(frozen=True, kw_only=True)
class SquadOptions:
    """How questions and contexts become windows, and how logits become answers."""

    max_seq_length: int = option(384, help="tokens per window (question + context)", parse=positive_int)
    doc_stride: int = option(128, help="step between window starts (MLPerf meaning)", parse=positive_int)
    max_query_length: int = option(64, help="question tokens kept", parse=positive_int)
    n_best: int = option(20, help="start/end candidates searched per window", parse=positive_int)
    max_answer_length: int = option(30, help="longest answer in tokens", parse=positive_int)
    null_score_threshold: float = option(0.0, help="SQuAD v2.0: null-answer threshold", parse=finite_float)
    answer_text: str | None = option(
        None,
        help="how the best span becomes text: 'characters' (exactly the predicted tokens' characters, as Hugging "
        "Face's run_qa) or 'mlperf' (whole words projected through WordPiece, as MLPerf's accuracy-squad.py); "
        "default: mlperf under bench, characters elsewhere",
        choices=ANSWER_TEXT_RULES,
    )

    def validate(self) -> None:
        """Raise ValueError for settings that cannot produce sound windows."""
        if self.max_seq_length > 512:
            raise ValueError(f"--max-seq-length {self.max_seq_length} exceeds BERT's 512 position embeddings")
        room = self.max_seq_length - self.max_query_length - 3
        if room < 1:
            raise ValueError(
                f"--max-seq-length {self.max_seq_length} leaves no room for context after a question of "
                f"--max-query-length {self.max_query_length}"
            )
        longest_context = self.max_seq_length - 4  # a one-token question, [CLS] and two [SEP]
        if self.doc_stride > longest_context:
            # The step is capped at a window's context length (as in the original BERT): a larger value would be
            # recorded but never honoured.
            raise ValueError(
                f"--doc-stride {self.doc_stride} is longer than any window's context (at most {longest_context} "
                f"tokens with --max-seq-length {self.max_seq_length})"
            )

    def with_answer_text(self, default: str) -> SquadOptions:
        """These options with the answer-text rule decided (`default` when none was given)."""
        return replace(self, answer_text=self.answer_text or default)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""
        return asdict(self)
