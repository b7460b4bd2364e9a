"""SST-2's options."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bertbench.cliargs import option, positive_int


@dataclass(frozen=True, kw_only=True)
class Sst2Options:
    """One sentence per sample: only its length is shaped."""

    max_seq_length: int = option(128, help="tokens per sentence ([CLS] + sentence + [SEP])", parse=positive_int)

    def validate(self) -> None:
        """Raise ValueError for settings that cannot run."""
        if not 3 <= self.max_seq_length <= 512:
            raise ValueError(f"--max-seq-length {self.max_seq_length}: must be between 3 and 512")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""
        return asdict(self)
