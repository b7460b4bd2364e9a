"""Masked-LM building blocks: masking statistics, whole-word masking, LAMB's update rule, the fixed eval set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertbench.cache import Cache
from bertbench.errors import BertbenchError
from bertbench.tasks.mlm import task as mlm
from bertbench.tasks.mlm.corpus import read_documents, split_sentences
from bertbench.tasks.mlm.masking import MaskingParams, SpecialIds, mask_sequence
from bertbench.training.lamb import Lamb

SPECIAL = SpecialIds(cls=101, sep=102, pad=0, mask=103, vocab_size=30522)


def test_masking_statistics_over_many_sequences() -> None:
    rng = np.random.default_rng(0)
    params = MaskingParams(mask_prob=0.15, max_predictions=1000)  # no cap: the 15 % rule alone
    chosen = replaced = kept = randomised = candidates = 0
    for _ in range(400):
        body = rng.integers(1000, 30000, 126)
        tokens = np.concatenate([[SPECIAL.cls], body, [SPECIAL.sep]])
        masked, positions, labels = mask_sequence(tokens, np.ones_like(tokens, bool), rng, params, SPECIAL)
        assert not set(positions) & {0, len(tokens) - 1}  # [CLS] / [SEP] never chosen
        assert (labels == tokens[positions]).all()
        candidates += 126
        chosen += len(positions)
        replaced += int((masked[positions] == SPECIAL.mask).sum())
        kept += int((masked[positions] == tokens[positions]).sum())
        randomised += int(((masked[positions] != SPECIAL.mask) & (masked[positions] != tokens[positions])).sum())
        untouched = np.setdiff1d(np.arange(len(tokens)), positions)
        assert (masked[untouched] == tokens[untouched]).all()
    assert chosen / candidates == pytest.approx(0.15, abs=0.005)  # round(126 * 0.15) = 19 per sequence
    assert replaced / chosen == pytest.approx(0.8, abs=0.02)
    assert kept / chosen == pytest.approx(0.1, abs=0.015)
    assert randomised / chosen == pytest.approx(0.1, abs=0.015)


def test_max_predictions_caps_the_count() -> None:
    tokens = np.concatenate([[SPECIAL.cls], np.arange(2000, 2300), [SPECIAL.sep]])
    _, positions, _ = mask_sequence(tokens, np.ones(302, bool), np.random.default_rng(1), MaskingParams(), SPECIAL)
    assert len(positions) == 20


def test_whole_word_masking_never_splits_a_word(tokenizer) -> None:
    text = "unbelievably antidisestablishmentarianism photosynthesis electroencephalography is remarkable " * 6
    ids = np.asarray([SPECIAL.cls, *tokenizer.encode_batch([text])[0].ids, SPECIAL.sep])
    starts = ~mlm.continuation_table(tokenizer)[ids]
    word_of = np.cumsum(starts)  # word index of every token
    params = MaskingParams(mask_prob=0.15, max_predictions=40, whole_word=True)
    for seed in range(50):
        _, positions, _ = mask_sequence(ids, starts, np.random.default_rng(seed), params, SPECIAL)
        assert len(positions) > 0
        for word in set(word_of[positions]):
            members = np.nonzero(word_of == word)[0]
            assert set(members) <= set(positions), "a word was masked only in part"


def test_lamb_step_equals_the_hand_computed_update() -> None:
    w0 = torch.tensor([3.0, 4.0])  # ||w|| = 5
    g = torch.tensor([0.5, -1.0])
    param = torch.nn.Parameter(w0.clone())
    param.grad = g.clone()
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.01
    Lamb([param], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd).step()
    # By hand, step 1: m^ = g, v^ = g^2, so m^/(sqrt(v^)+eps) = g/(|g|+eps) ~ sign(g) = [1, -1].
    r = np.array([0.5 / (0.5 + eps), -1.0 / (1.0 + eps)])
    u = r + wd * np.array([3.0, 4.0])  # [1.03, -0.96]
    trust = 5.0 / np.sqrt(u @ u)
    expected = np.array([3.0, 4.0]) - lr * trust * u
    assert np.allclose(param.detach().numpy(), expected, atol=1e-6)
    assert np.allclose(
        expected, [3.0 - 0.1 * 5 / np.hypot(1.03, 0.96) * 1.03, 4.0 + 0.1 * 5 / np.hypot(1.03, 0.96) * 0.96]
    )


def test_lamb_trust_ratio_is_one_for_zero_weights() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    param.grad = torch.tensor([1.0, -2.0, 0.5])
    Lamb([param], lr=0.5, weight_decay=0.0).step()
    # ||w|| = 0 -> trust 1: the step is lr * sign(g) (Adam's first step).
    assert np.allclose(param.detach().numpy(), [-0.5, 0.5, -0.5], atol=1e-5)


def test_eval_set_is_identical_across_builds(tokenizer, tmp_path: Path) -> None:
    corpus = tmp_path / "held_out.txt"
    corpus.write_text("The cat sat on the mat. It was a sunny day.\n\nAnother document here. It has two lines.\n" * 20)
    first = mlm.load_eval_set([corpus], tokenizer, 64, MaskingParams(), Cache(tmp_path / "c1"))
    second = mlm.load_eval_set([corpus], tokenizer, 64, MaskingParams(), Cache(tmp_path / "c2"))
    assert not first.cache_hit and not second.cache_hit  # two independent builds
    for name in ("input_ids", "masked_positions", "masked_labels", "lengths"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert (first.masked_labels != -100).sum() > 0


def test_sentence_splitting_and_document_blocks(tmp_path: Path) -> None:
    assert split_sentences('He left. "Why?" she asked. Mr. Smith met J. R. Tolkien in 2008. The end!') == [
        "He left.",
        '"Why?" she asked.',
        "Mr. Smith met J. R. Tolkien in 2008.",
        "The end!",
    ]
    path = tmp_path / "c.txt"
    path.write_text("First doc line one. Second sentence.\nAnother line.\n\n\nSecond doc.\n")
    assert read_documents([path]) == [["First doc line one.", "Second sentence.", "Another line."], ["Second doc."]]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty corpus"), ("   \n\n  \n", "empty corpus"), ("--- ***\n\n...\n", "no complete sentence")],
)
def test_bad_corpora_are_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(BertbenchError, match=message):
        read_documents([path])
