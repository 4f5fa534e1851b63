"""Metrics shared by the built-in engine's evaluator and ``result.json`` (no framework import)."""
import numpy as np


def macro_f1_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the labels present in ``y_true``: sklearn's
    ``f1_score(average="macro", labels=np.unique(y_true))``, which Dassl reports."""
    scores = []
    for label in np.unique(y_true):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))
