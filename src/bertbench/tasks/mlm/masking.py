"""BERT masking: choose 15 % of the tokens (at most max_predictions), replace 80 % with [MASK], 10 % with a
random token and keep 10 %; with whole-word masking, all word pieces of a chosen word are chosen together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100  # label of positions that are not predicted


@dataclass(frozen=True)
class MaskingParams:
    """How many and which tokens to mask."""

    mask_prob: float = 0.15
    max_predictions: int = 20
    whole_word: bool = False


@dataclass(frozen=True)
class SpecialIds:
    """Ids masking must know: never masked ([CLS], [SEP], [PAD]) and the replacement token [MASK]."""

    cls: int
    sep: int
    pad: int
    mask: int
    vocab_size: int


def mask_sequence(
    tokens: np.ndarray,
    word_start: np.ndarray,
    rng: np.random.Generator,
    params: MaskingParams,
    special: SpecialIds,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masked tokens, sorted masked positions, original ids at those positions) for one sequence."""
    candidates = np.nonzero((tokens != special.cls) & (tokens != special.sep) & (tokens != special.pad))[0]
    if len(candidates) == 0:
        return tokens.copy(), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if params.whole_word:
        # A word starts at a token that is not a "##" continuation; continuations join the group before them.
        starts = np.nonzero(word_start[candidates])[0]
        if len(starts) == 0 or starts[0] != 0:
            starts = np.concatenate([[0], starts])
        groups = np.split(candidates, starts[1:])
    else:
        groups = [np.array([c]) for c in candidates]
    target = min(params.max_predictions, max(1, round(len(candidates) * params.mask_prob)))
    chosen: list[int] = []
    for g in rng.permutation(len(groups)):
        group = groups[g]
        if len(chosen) + len(group) > target:
            continue  # as the reference implementation: skip a word that would overflow, try the next
        chosen.extend(group.tolist())
        if len(chosen) == target:
            break
    positions = np.sort(np.asarray(chosen, dtype=np.int64))
    labels = tokens[positions].astype(np.int64)
    masked = tokens.copy()
    draw = rng.random(len(positions))
    replace = positions[draw < 0.8]
    randomise = positions[(draw >= 0.8) & (draw < 0.9)]
    masked[replace] = special.mask
    masked[randomise] = rng.integers(0, special.vocab_size, len(randomise))
    return masked, positions, labels
