"""WordPiece tokenizer on the `tokenizers` library (no transformers import on the hot path).

Saved tokenizers carry `tokenizer.json`, `vocab.txt`, `tokenizer_config.json` and `special_tokens_map.json`,
which transformers' AutoTokenizer reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer

from bertbench.io_utils import atomic_write_json, atomic_write_text, sha256_text

SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


@dataclass
class Encoding:
    """Token ids of one text and each token's (start, end) character span in it."""

    ids: list[int]
    offsets: list[tuple[int, int]]


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer with the special-token ids the tasks need."""

    def __init__(self, backend: Tokenizer, do_lower_case: bool) -> None:
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.do_lower_case = do_lower_case
        vocab = backend.get_vocab()
        missing = [tok for tok in SPECIAL_TOKENS.values() if tok not in vocab]
        if missing:
            raise ValueError(f"tokenizer vocabulary lacks special tokens {missing}")
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        self.pad_id = vocab["[PAD]"]
        self.mask_id = vocab["[MASK]"]
        self.unk_id = vocab["[UNK]"]
        self.vocab_size = backend.get_vocab_size()

    @classmethod
    def from_directory(cls, directory: str | Path) -> WordPieceTokenizer:
        """Load from a Hugging Face model directory (`tokenizer.json`, else `vocab.txt`)."""
        directory = Path(directory)
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        do_lower_case = bool(config.get("do_lower_case", True))
        if (directory / "tokenizer.json").exists():
            backend = Tokenizer.from_file(str(directory / "tokenizer.json"))
        elif (directory / "vocab.txt").exists():
            backend = BertWordPieceTokenizer(
                str(directory / "vocab.txt"),
                lowercase=do_lower_case,
                strip_accents=config.get("strip_accents"),
                clean_text=True,
                handle_chinese_chars=config.get("tokenize_chinese_chars", True),
            )._tokenizer
        else:
            raise FileNotFoundError(f"{directory}: no tokenizer.json or vocab.txt")
        return cls(backend, do_lower_case)

    def encode_batch(self, texts: list[str]) -> list[Encoding]:
        """Tokenise texts without special tokens, keeping character offsets."""
        encoded = self.backend.encode_batch(texts, add_special_tokens=False)
        return [Encoding(e.ids, e.offsets) for e in encoded]

    def encode_words(self, sentences: list[list[str]]) -> list[list[list[int]]]:
        """Word pieces of every word of pre-split sentences (a word of whitespace alone gets none)."""
        encoded = self.backend.encode_batch(sentences, is_pretokenized=True, add_special_tokens=False)
        result = []
        for words, encoding in zip(sentences, encoded, strict=True):
            pieces: list[list[int]] = [[] for _ in words]
            for token_id, word in zip(encoding.ids, encoding.word_ids, strict=True):
                if word is not None:
                    pieces[word].append(token_id)
            result.append(pieces)
        return result

    def tokenize(self, text: str) -> list[str]:
        """WordPiece token strings of a text, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        """Vocabulary strings of token ids."""
        return [self.backend.id_to_token(i) for i in ids]

    def fingerprint(self) -> str:
        """Hash of the full tokenizer definition: part of every feature-cache key."""
        return sha256_text(self.backend.to_str())

    def save(self, directory: str | Path) -> None:
        """Write the files transformers' AutoTokenizer needs to rebuild this tokenizer."""
        directory = Path(directory)
        atomic_write_text(directory / "tokenizer.json", self.backend.to_str())
        vocab = sorted(self.backend.get_vocab().items(), key=lambda item: item[1])
        atomic_write_text(directory / "vocab.txt", "".join(f"{token}\n" for token, _ in vocab))
        atomic_write_json(
            directory / "tokenizer_config.json",
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": self.do_lower_case,
                "model_max_length": 512,
                **SPECIAL_TOKENS,
            },
        )
        atomic_write_json(directory / "special_tokens_map.json", SPECIAL_TOKENS)
