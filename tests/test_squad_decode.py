"""Answer decoding from known logits, across windows, with the max-context and length rules."""

from __future__ import annotations

import numpy as np

from bertbench.tasks.squad.data import SquadExample
from bertbench.tasks.squad.features import FeatureParams, build_features
from bertbench.tasks.squad.postprocess import DecodeParams, decode_predictions

CONTEXT = " ".join(["alpha beta gamma delta"] * 15)  # 60 one-piece words
PARAMS = FeatureParams(max_seq_length=40, doc_stride=16, max_query_length=8)


def setup(tokenizer):
    example = SquadExample("q", "what?", CONTEXT, ["alpha"], [0])
    features = build_features([example], tokenizer, PARAMS)
    low = np.full((len(features), PARAMS.max_seq_length), -100.0, dtype=np.float32)
    return example, features, low.copy(), low.copy()


def position_of_word(features, row: int, word_index: int) -> int:
    """Token position in window `row` of the context word `word_index`."""
    char = len(" ".join(CONTEXT.split()[:word_index])) + (1 if word_index else 0)
    return int(np.nonzero(features.offsets[row, :, 0] == char)[0][0])


def word_span(a: int, b: int) -> str:
    return " ".join(CONTEXT.split()[a : b + 1])


def test_best_span_in_a_later_window(tokenizer) -> None:
    example, f, start, end = setup(tokenizer)
    assert len(f) >= 3
    # Windows of 35 tokens start at words 0, 16, 32. Words 50..52 have their max context in window 2.
    s, e = position_of_word(f, 2, 50), position_of_word(f, 2, 52)
    assert f.max_context[2, s]
    start[2, s], end[2, e] = 5.0, 4.0
    # A lower-scoring span elsewhere must lose.
    start[0, position_of_word(f, 0, 3)], end[0, position_of_word(f, 0, 4)] = 4.0, 3.0
    out = decode_predictions([example], f, start, end, DecodeParams())
    assert out == {"q": word_span(50, 52)}


def test_spans_outside_context_reversed_or_too_long_are_skipped(tokenizer) -> None:
    example, f, start, end = setup(tokenizer)
    w = lambda word: position_of_word(f, 0, word)  # noqa: E731 - positions of words 0..24 in window 0
    start[0, 1] = 50.0  # a question token: never a start
    start[0, w(0)], end[0, w(8)] = 30.0, 30.0  # 9 words: too long for a cap of 5
    start[0, w(14)], end[0, w(10)] = 40.0, 40.0  # end before start
    start[0, w(20)], end[0, w(21)] = 1.0, 1.0  # the only valid span under the cap
    assert decode_predictions([example], f, start, end, DecodeParams(max_answer_length=5)) == {"q": word_span(20, 21)}
    # Without the cap, words 0..10 (30 + 40) win.
    assert decode_predictions([example], f, start, end, DecodeParams(max_answer_length=30)) == {"q": word_span(0, 10)}


def test_start_must_be_max_context_in_its_window(tokenizer) -> None:
    example, f, start, end = setup(tokenizer)
    # Word 30 appears in windows 0 and 1; it has more context in window 1 (14 vs 4 tokens on its short side).
    s0, s1 = position_of_word(f, 0, 30), position_of_word(f, 1, 30)
    assert not f.max_context[0, s0] and f.max_context[1, s1]
    start[0, s0], end[0, s0 + 1] = 20.0, 20.0  # high, but its start is not max-context there: ignored
    start[1, s1], end[1, s1 + 1] = 2.0, 2.0
    assert decode_predictions([example], f, start, end, DecodeParams()) == {"q": word_span(30, 31)}


def test_null_answer_for_v2(tokenizer) -> None:
    example, f, start, end = setup(tokenizer)
    s = position_of_word(f, 0, 3)
    start[0, s], end[0, s] = 1.0, 1.0
    start[:, 0], end[:, 0] = 3.0, 3.0  # null score 6 > best span 2
    assert decode_predictions([example], f, start, end, DecodeParams(allow_null=True)) == {"q": ""}
    assert decode_predictions([example], f, start, end, DecodeParams(allow_null=True, null_score_threshold=5.0)) == {
        "q": word_span(3, 3)
    }


SPECTRE = "Spectre (2015) is the twenty-fourth James Bond film, written by John Logan, Neal Purvis, and others."


def _span_of(features, context: str, first: str, last: str, tokenizer) -> tuple[int, int]:
    """Token positions of the first token spelled `first` and the next one spelled `last` in window 0."""
    pieces = tokenizer.convert_ids_to_tokens([int(i) for i in features.input_ids[0, : features.lengths[0]]])
    context_from = int(np.nonzero(features.offsets[0, :, 0] >= 0)[0][0])
    s = pieces.index(first, context_from)
    return s, pieces.index(last, s)


def test_the_mlperf_rule_projects_through_bert_basic_tokens(tokenizer) -> None:
    """MLPerf's accuracy-squad.py maps the predicted pieces back through BERT's *basic* (word-level) tokenizer: a span
    starting inside "Spectre" (its "##tre" piece) answers "tre", as Hugging Face's characters do; a span ending at a
    word split into pieces leaves the word's trailing comma out ("Neal Purvis" of "Neal Purvis,")."""
    example = SquadExample("q", "which film?", SPECTRE, ["Spectre"], [0])
    features = build_features([example], tokenizer, FeatureParams(96, 32, 16))
    pieces = tokenizer.tokenize("Spectre")
    assert len(pieces) == 2 and pieces[1].startswith("##")  # the real vocabulary splits it: the case is real
    low = np.full((1, 96), -100.0, dtype=np.float32)
    start, end = low.copy(), low.copy()
    s, e = _span_of(features, SPECTRE, pieces[1], pieces[1], tokenizer)
    start[0, s], end[0, e] = 5.0, 5.0
    characters = decode_predictions([example], features, start, end, DecodeParams())
    mlperf = decode_predictions([example], features, start, end, DecodeParams(answer_text="mlperf"), tokenizer)
    assert characters == {"q": pieces[1][2:]} and mlperf == {"q": "tre"}
    # Whole words are cut at the predicted piece: "Logan" out of "Logan,", "Neal Purvis" out of "Neal Purvis,".
    for first, last, answer in (("john", "logan", "John Logan"), ("neal", "##rvis", "Neal Purvis")):
        start, end = low.copy(), low.copy()
        s, e = _span_of(features, SPECTRE, first, last, tokenizer)
        start[0, s], end[0, e] = 5.0, 5.0
        mlperf = decode_predictions([example], features, start, end, DecodeParams(answer_text="mlperf"), tokenizer)
        assert mlperf == {"q": answer}
    # No valid span: MLPerf's scorer answers "empty", Hugging Face's an empty string.
    nothing = np.full((1, 96), -100.0, dtype=np.float32)
    nothing[0, 0] = 50.0  # only [CLS] scores, and it is not in the context
    params = DecodeParams(n_best=1, answer_text="mlperf")
    assert decode_predictions([example], features, nothing, nothing, params, tokenizer) == {"q": "empty"}
