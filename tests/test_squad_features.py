"""Windowing, labels and offsets on synthetic edge cases and on the real dev file."""

from __future__ import annotations

import numpy as np
import pytest

from bertbench.tasks.squad.data import SquadExample, load_squad
from bertbench.tasks.squad.features import FeatureParams, build_features

from .conftest import SQUAD_DEV

WORDS = [f"word{i}" for i in range(400)]  # "wordN" is several word pieces; fine, offsets are per piece


def make_example(context: str, answer: str, question: str = "what is it?") -> SquadExample:
    start = context.index(answer)
    return SquadExample("q1", question, context, [answer], [start])


def window_texts(features, example) -> list[str | None]:
    """The answer text each window's label points at (None when the label is [CLS])."""
    out = []
    for row in range(len(features)):
        s, e = features.start_positions[row], features.end_positions[row]
        out.append(None if s == 0 else example.context[features.offsets[row, s, 0] : features.offsets[row, e, 1]])
    return out


def test_dev_window_count_is_pinned(tokenizer) -> None:
    data = load_squad(SQUAD_DEV)
    features = build_features(data.examples, tokenizer, FeatureParams(384, 128, 64))
    # 795 questions -> 807 windows with doc_stride = 128 as a step (HF's overlap meaning would give fewer).
    assert len(data.examples) == 795
    assert len(features) == 807
    assert features.lengths.max() <= 384


def test_long_context_makes_many_windows_with_stride_as_step(tokenizer) -> None:
    context = " ".join(["alpha beta gamma delta"] * 60)  # 240 one-piece words
    example = make_example(context, "gamma delta alpha")
    params = FeatureParams(max_seq_length=64, doc_stride=32, max_query_length=16)
    f = build_features([example], tokenizer, params)
    q_len = len(tokenizer.encode_batch([example.question])[0].ids)
    window = 64 - q_len - 3
    assert len(f) > 3
    # Window k starts at token 32k; the last one ends exactly at the end of the context.
    ctx_tokens = f.offsets[:, :, 0] >= 0
    per_window = ctx_tokens.sum(axis=1)
    assert all(n == window for n in per_window[:-1])
    first_char = [f.offsets[r][ctx_tokens[r]][0, 0] for r in range(len(f))]
    starts_in_words = [len(context[:c].split()) for c in first_char]
    assert starts_in_words == [32 * k for k in range(len(f))]
    assert f.offsets[-1][ctx_tokens[-1]][-1, 1] == len(context)
    # Every context token is the max-context token of exactly one window.
    counts = np.zeros(240, dtype=int)
    for r in range(len(f)):
        for s in f.offsets[r][f.max_context[r]][:, 0]:
            counts[len(context[:s].split())] += 1
    assert (counts == 1).all()


def test_answer_crossing_a_window_boundary(tokenizer) -> None:
    context = " ".join(["alpha beta gamma delta"] * 30)
    params = FeatureParams(max_seq_length=48, doc_stride=24, max_query_length=16)
    q_len = len(tokenizer.encode_batch(["what is it?"])[0].ids)
    window = 48 - q_len - 3
    words = context.split()
    # An answer of 6 words straddling the end of the first window (tokens window-3 .. window+2).
    answer_words = words[window - 3 : window + 3]
    start_char = len(" ".join(words[: window - 3])) + 1
    answer = " ".join(answer_words)
    example = SquadExample("q", "what is it?", context, [answer], [start_char])
    f = build_features([example], tokenizer, params)
    texts = window_texts(f, example)
    assert texts[0] is None  # cut by the boundary: labelled [CLS]
    assert answer in texts  # wholly inside a later window, recovered exactly from offsets


def test_question_longer_than_max_query_length_is_truncated(tokenizer) -> None:
    question = " ".join(["why"] * 100)
    example = make_example("the answer is forty two", "forty two", question=question)
    f = build_features([example], tokenizer, FeatureParams(max_seq_length=64, doc_stride=32, max_query_length=10))
    assert len(f) == 1
    assert (f.token_type_ids[0, : 10 + 2] == 0).all()  # [CLS] + 10 question tokens + [SEP]
    assert f.token_type_ids[0, 12] == 1
    assert window_texts(f, example) == ["forty two"]


def test_non_ascii_offsets_return_the_original_text(tokenizer) -> None:
    context = "Le café de Zürich sert des crêpes; 北京 est loin d'Ελλάδα."
    for answer in ["Zürich", "crêpes", "北京", "Ελλάδα", "café de Zürich"]:
        example = make_example(context, answer)
        f = build_features([example], tokenizer, FeatureParams())
        assert window_texts(f, example) == [answer]


def test_answer_start_mismatch_is_counted(tmp_path) -> None:
    path = tmp_path / "bad_start.json"
    path.write_text(
        '{"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "one two three", "qas": ['
        '{"id": "a", "question": "q?", "answers": [{"text": "two", "answer_start": 0}]},'
        '{"id": "b", "question": "q?", "answers": [{"text": "three", "answer_start": 8}]}]}]}]}'
    )
    data = load_squad(path)
    assert data.problems["answer_start_mismatch"] == 1
    assert len(data.examples) == 2


@pytest.mark.parametrize("stride", [16, 40])
def test_windows_cover_the_whole_context(tokenizer, stride: int) -> None:
    context = " ".join(WORDS[:150])
    example = make_example(context, "word10")
    f = build_features([example], tokenizer, FeatureParams(max_seq_length=96, doc_stride=stride, max_query_length=8))
    covered = set()
    for r in range(len(f)):
        covered.update(f.offsets[r][f.offsets[r, :, 0] >= 0][:, 0].tolist())
    all_starts = {s for s, _ in tokenizer.encode_batch([context])[0].offsets}
    assert covered == all_starts
