"""NER's options."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bertbench.cliargs import option, positive_int


@dataclass(frozen=True, kw_only=True)
class NerOptions:
    """Windows of word pieces; a sentence longer than one window is split into overlapping ones, never cut."""

    max_seq_length: int = option(128, help="tokens per window ([CLS] + pieces + [SEP])", parse=positive_int)
    stride: int = option(32, help="pieces two windows of one long sentence share", parse=positive_int)

    def validate(self) -> None:
        """Raise ValueError for settings that cannot run."""
        if not 8 <= self.max_seq_length <= 512:
            raise ValueError(f"--max-seq-length {self.max_seq_length}: must be between 8 and 512")
        if self.stride >= self.max_seq_length - 2:
            raise ValueError(f"--stride {self.stride}: must be below --max-seq-length - 2 ({self.max_seq_length - 2})")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""
        return asdict(self)
