"""GLUE's metrics, as its own evaluation computes them: accuracy, F1 of the positive class (MRPC), Pearson and
Spearman correlation (STS-B, by scipy.stats). Every figure is a fraction, as GLUE's scorer returns it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Share of samples whose predicted label is the gold one."""
    return float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))


def positive_f1(predicted: Sequence[str], gold: Sequence[str], positive: str) -> float:
    """F1 of the `positive` class (sklearn's f1_score with pos_label); 0 when it is never predicted nor gold."""
    true_pos = sum(p == positive and g == positive for p, g in zip(predicted, gold, strict=True))
    predicted_pos = sum(p == positive for p in predicted)
    gold_pos = sum(g == positive for g in gold)
    return 2 * true_pos / (predicted_pos + gold_pos) if predicted_pos + gold_pos else 0.0


def correlations(predicted: Sequence[float], gold: Sequence[float]) -> dict[str, float | None]:
    """Pearson's r and Spearman's rho of predicted and gold scores (None where undefined: a constant side)."""
    from scipy.stats import pearsonr, spearmanr

    pred, true = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if np.ptp(pred) == 0 or np.ptp(true) == 0:  # scipy warns and returns NaN: say "undefined" plainly
        return {"pearson": None, "spearman": None}
    return {"pearson": float(pearsonr(pred, true)[0]), "spearman": float(spearmanr(pred, true)[0])}
