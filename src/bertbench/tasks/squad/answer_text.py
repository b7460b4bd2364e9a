"""The text of a predicted span, by one of two published rules.

- `characters`: the context's characters from the first token's start to the last token's end (Hugging Face's
  run_qa, with a fast tokenizer's offsets). A span starting inside a word starts there ("tre" of "Spectre").
- `mlperf`: MLPerf Inference's `accuracy-squad.py` (google-research/bert's `get_final_text`). The span's WordPiece
  tokens are joined and de-"##"-ed; the whole whitespace-separated words that hold its first and last tokens are
  joined by single spaces; the token text is then located in the *basic* (word-level: lower-cased, accents
  stripped, split on punctuation, no WordPiece) tokenisation of those words, and projected back onto their
  characters when the two agree in length once spaces are dropped, else the whole words are the answer. So a span
  that ends before a word's trailing comma leaves it out ("Kony Ealy" of "Kony Ealy,"), and one starting inside a
  word starts there ("tre" of "Spectre").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from tokenizers import normalizers, pre_tokenizers

from bertbench.models import WordPieceTokenizer

# MLPerf's create_squad_data.py splits contexts on these characters only (not on every Unicode space).
MLPERF_WHITESPACE = frozenset(" \t\r\n\u202f")
NO_SPAN_TEXT = {"characters": "", "mlperf": "empty"}  # what each rule answers when no span is valid


@dataclass
class ContextWords:
    """A context split into words as MLPerf splits it, with the word of every character."""

    context: str

    @cached_property
    def _split(self) -> tuple[list[str], np.ndarray]:
        words: list[str] = []
        word_of_char = np.empty(len(self.context), dtype=np.int64)
        after_space = True
        for i, char in enumerate(self.context):
            if char in MLPERF_WHITESPACE:
                after_space = True
            else:
                if after_space:
                    words.append(char)
                else:
                    words[-1] += char
                after_space = False
            word_of_char[i] = len(words) - 1
        return words, word_of_char

    def words_between(self, first_char: int, last_char: int) -> str:
        """The whole words holding characters `first_char` .. `last_char`, joined by single spaces."""
        words, word_of_char = self._split
        return " ".join(words[word_of_char[first_char] : word_of_char[last_char] + 1])


def span_text(
    rule: str,
    context: ContextWords,
    offsets: np.ndarray,
    token_ids: np.ndarray,
    start: int,
    end: int,
    tokenizer: WordPieceTokenizer | None,
) -> str:
    """Text of the span of tokens `start`..`end` of one window (`offsets`: each token's characters in the context)."""
    if rule == "characters":
        return context.context[offsets[start, 0] : offsets[end, 1]]
    if tokenizer is None:
        raise ValueError("the mlperf answer-text rule needs the tokenizer")
    pieces = " ".join(tokenizer.convert_ids_to_tokens([int(i) for i in token_ids[start : end + 1]]))
    predicted = " ".join(pieces.replace(" ##", "").replace("##", "").strip().split())
    words = context.words_between(int(offsets[start, 0]), int(offsets[end, 0]))
    return project_onto_words(predicted, words)


# google-research/bert's BasicTokenizer, which accuracy-squad.py hands get_final_text (always lower-casing): the
# `tokenizers` library's BERT normalizer and pre-tokenizer do the same steps (clean, space out CJK, lower-case, strip
# accents, split on whitespace and punctuation).
_BASIC_NORMALIZER = normalizers.BertNormalizer(
    clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
)
_BASIC_SPLITTER = pre_tokenizers.BertPreTokenizer()


def basic_tokens(text: str) -> list[str]:
    """BERT's basic (word-level) tokens of `text`, lower-cased, as MLPerf's scorer makes them."""
    return [token for token, _ in _BASIC_SPLITTER.pre_tokenize_str(_BASIC_NORMALIZER.normalize_str(text))]


def project_onto_words(predicted: str, words: str) -> str:
    """The characters of `words` that `predicted` (de-tokenised WordPiece text) stands for, or all of `words`."""
    tokenized = " ".join(basic_tokens(words))
    begin = tokenized.find(predicted)
    if begin < 0:
        return words
    finish = begin + len(predicted) - 1
    words_chars, words_index = _without_spaces(words)
    tokenized_chars, tokenized_index = _without_spaces(tokenized)
    if len(words_chars) != len(tokenized_chars):
        return words  # the tokenizer changed the characters (accents): no 1:1 alignment
    to_stripped = {position: i for i, position in enumerate(tokenized_index)}
    if begin not in to_stripped or finish not in to_stripped:
        return words
    return words[words_index[to_stripped[begin]] : words_index[to_stripped[finish]] + 1]


def _without_spaces(text: str) -> tuple[str, list[int]]:
    """`text` without " " and, for each kept character, its position in `text`."""
    kept = [i for i, char in enumerate(text) if char != " "]
    return "".join(text[i] for i in kept), kept
