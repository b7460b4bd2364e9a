"""Masked-LM options: sequence length and masking (BERT pretraining phase 1 defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bertbench.cliargs import fraction, option, positive_int
from bertbench.tasks.mlm.masking import MaskingParams


@dataclass(frozen=True, kw_only=True)
class MlmOptions:
    """15 % of tokens masked, at most 20 predictions per 128-token sequence."""

    max_seq_length: int = option(128, help="tokens per packed sequence", parse=positive_int)
    mask_prob: float = option(0.15, help="fraction of tokens masked", parse=fraction)
    max_predictions_per_seq: int = option(20, help="masked positions per sequence at most", parse=positive_int)
    whole_word_masking: bool = option(False, help="mask all word pieces of a chosen word together")

    def validate(self) -> None:
        """Raise ValueError for settings that cannot run."""
        if not 8 <= self.max_seq_length <= 512:
            raise ValueError(f"--max-seq-length {self.max_seq_length}: must be between 8 and 512")

    @property
    def masking(self) -> MaskingParams:
        """The masking parameters these options describe."""
        return MaskingParams(self.mask_prob, self.max_predictions_per_seq, self.whole_word_masking)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for records and cache keys."""
        return asdict(self)
