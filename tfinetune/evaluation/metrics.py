"""NumPy helpers shared by the reports: safe ratios, ROC AUC and calibration bins.

The tests check each against scikit-learn.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_BINS = 15


def safe_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise `a / b`, with 0 where `b` is 0 (scikit-learn's `zero_division=0`).

    Args:
        a: the numerators.
        b: the denominators.

    Example:
    >>> safe_ratio([1, 2], [2, 0]).tolist()
    [0.5, 0.0]
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def f1_scores(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Per class: the harmonic mean of precision and recall (0 when both are 0).

    Args:
        precision: each class's precision.
        recall: each class's recall.

    Example:
    >>> f1_scores([0.5, 0.0], [1.0, 0.0]).round(3).tolist()
    [0.667, 0.0]
    """
    precision, recall = np.asarray(precision, float), np.asarray(recall, float)
    return safe_ratio(2 * precision * recall, precision + recall)


def per_class_metrics(report, **extra: list) -> dict:
    """Each class's metrics by name, as `metrics.json` holds them.

    Args:
        report: has `class_names` and per-class `precision`, `recall`, `f1` and `support`.
        **extra: more per-class values, listed first (e.g. a multi-label threshold).

    Example:
    >>> from types import SimpleNamespace
    >>> r = SimpleNamespace(class_names=["a"], precision=[0.5], recall=[1.0], f1=[0.6],
    ...                     support=[3])
    >>> per_class_metrics(r, threshold=[0.4])
    {'a': {'threshold': 0.4, 'precision': 0.5, 'recall': 1.0, 'f1': 0.6, 'support': 3}}
    """
    return {
        name: {
            **{key: values[i] for key, values in extra.items()},
            "precision": float(report.precision[i]),
            "recall": float(report.recall[i]),
            "f1": float(report.f1[i]),
            "support": int(report.support[i]),
        }
        for i, name in enumerate(report.class_names)
    }


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under the ROC curve (ties count half), or None with one kind of label only.

    Args:
        y_true: 0/1 labels.
        scores: predicted scores.

    Example:
    >>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    0.75
    """
    y_true = np.asarray(y_true).astype(bool)
    positives, negatives = int(y_true.sum()), int((~y_true).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = np.asarray(scores)[order]
    # Average ranks over ties (1-based), as the Mann-Whitney statistic needs.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[y_true].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def calibration_bins(
    correct: np.ndarray, confidence: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: example count, accuracy and mean confidence.

    Args:
        correct: 1 where the top prediction was right, else 0.
        confidence: the top predicted probability of each example.
        n_bins: the number of bins over [0, 1].

    Example:
    >>> counts, acc, conf = calibration_bins(np.array([1, 0]), np.array([0.85, 0.86]), 10)
    >>> counts[7:9].tolist(), float(acc[8])
    ([0, 2], 0.5)
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], confidence)  # a value on an edge joins the lower bin
    counts = np.bincount(ids, minlength=n_bins)
    accuracy = safe_ratio(np.bincount(ids, weights=correct, minlength=n_bins), counts)
    mean_conf = safe_ratio(np.bincount(ids, weights=confidence, minlength=n_bins), counts)
    return counts, accuracy, mean_conf
