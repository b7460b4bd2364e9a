"""Options of the sentence tasks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bertbench.cliargs import option, positive_int


@dataclass(frozen=True, kw_only=True)
class SentenceOptions:
    """One sentence or a pair per sample; a pair longer than the window loses tokens from its longer side."""

    max_seq_length: int = option(128, help="tokens per sample ([CLS] a [SEP] (b [SEP]))", parse=positive_int)

    def validate(self) -> None:
        """Raise ValueError for settings that cannot run."""
        if not 5 <= self.max_seq_length <= 512:
            raise ValueError(f"--max-seq-length {self.max_seq_length}: must be between 5 and 512")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""
        return asdict(self)
