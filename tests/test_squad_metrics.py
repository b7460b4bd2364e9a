"""The official SQuAD metrics on hand-made cases whose scores follow from the definitions by hand."""

import pytest

from bertbench.tasks.squad.data import SquadExample
from bertbench.tasks.squad.metrics import (
    exact_match,
    f1_v1,
    f1_v2,
    normalize_answer,
    squad_v1_metrics,
    squad_v2_metrics,
)


def ex(qid: str, answers: list[str], impossible: bool = False) -> SquadExample:
    return SquadExample(qid, "q?", "context", answers, [0] * len(answers), impossible)


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The  Eiffel\tTower!", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("U.S.A.", "usa"),
        ("theatre and anthem", "theatre and anthem"),  # articles only as whole words
        ("Café «Zürich»", "café «zürich»"),  # only ASCII punctuation is removed, as in the official script
        ("the", ""),
    ],
)
def test_normalisation(text: str, normalised: str) -> None:
    assert normalize_answer(text) == normalised


def test_partial_overlap_f1() -> None:
    # pred tokens: eiffel tower in paris; gold: eiffel tower -> P = 2/4, R = 2/2, F1 = 2/3
    assert f1_v1("the Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)
    assert exact_match("the Eiffel Tower in Paris", "Eiffel Tower") == 0.0
    # repeated tokens count with multiplicity: pred x x y / gold x y y -> common {x:1, y:1} = 2, P = R = 2/3
    assert f1_v1("x x y", "x y y") == pytest.approx(2 / 3)


def test_empty_prediction_and_empty_gold() -> None:
    assert f1_v1("", "Paris") == 0.0
    # v1.1 quirk: a gold that normalises to nothing matches an empty prediction exactly but has F1 0.
    assert exact_match("", "the") == 1.0
    assert f1_v1("", "the") == 0.0
    # v2.0 scores empty-vs-empty as F1 1.
    assert f1_v2("", "") == 1.0
    assert f1_v2("Paris", "") == 0.0


def test_v1_aggregate_takes_max_over_answers_and_zero_for_missing() -> None:
    examples = [
        ex("a", ["in Paris, France", "Paris"]),  # EM 1, F1 1 via the second answer
        ex("b", ["Eiffel Tower"]),  # partial: EM 0, F1 2/3
        ex("c", ["Zürich"]),  # no prediction: 0
        ex("d", ["Café"]),  # unicode, case: EM 1
    ]
    predictions = {"a": "Paris", "b": "the Eiffel Tower in Paris", "d": "CAFÉ"}
    metrics = squad_v1_metrics(examples, predictions)
    assert metrics["exact_match"] == pytest.approx(100 * 2 / 4)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)


def test_v2_splits_has_answer_and_no_answer() -> None:
    examples = [ex("a", ["Paris"]), ex("b", [], impossible=True), ex("c", [], impossible=True)]
    metrics = squad_v2_metrics(examples, {"a": "Paris", "b": "", "c": "London"})
    assert metrics["exact_match"] == pytest.approx(200 / 3)
    assert metrics["HasAns_exact_match"] == 100.0
    assert metrics["HasAns_total"] == 1
    assert metrics["NoAns_exact_match"] == 50.0
    assert metrics["NoAns_f1"] == 50.0
    assert metrics["NoAns_total"] == 2
