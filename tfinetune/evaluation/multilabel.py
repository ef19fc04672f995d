"""Metrics for multi-label classifiers: per-class AUC, chosen thresholds, precision and recall."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tfinetune.evaluation.metrics import f1_scores, per_class_metrics, roc_auc, safe_ratio


def choose_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Per class, the probability threshold with the best F1 on these examples (0.5 if none).

    Args:
        labels: `[examples, classes]` multi-hot labels.
        probabilities: `[examples, classes]` predicted probabilities.

    Example:
    >>> choose_thresholds(np.array([[1], [0], [1]]), np.array([[0.9], [0.6], [0.7]])).tolist()
    [0.7]
    """
    thresholds = np.full(labels.shape[1], 0.5)
    for c in range(labels.shape[1]):
        y, p = labels[:, c].astype(bool), probabilities[:, c]
        if not y.any():
            continue
        order = np.argsort(-p, kind="stable")
        tp = np.cumsum(y[order])
        predicted = np.arange(1, len(p) + 1)
        # Only the last position of each run of equal scores is a threshold one can set.
        last = np.r_[p[order][1:] != p[order][:-1], True]
        f1 = 2 * tp / (predicted + y.sum())
        best = np.flatnonzero(last)[np.argmax(f1[last])]
        thresholds[c] = p[order][best]
    return thresholds


@dataclass
class MultiLabelReport:
    """Metrics of a multi-label classifier: each class is a yes/no decision at a threshold.

    Args:
        class_names: the classes, in output order.
        labels: `[examples, classes]` multi-hot labels.
        probabilities: `[examples, classes]` predicted probabilities.
        thresholds: the probability at or above which each class is predicted.
    """

    class_names: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    thresholds: np.ndarray
    predictions: np.ndarray = field(init=False)

    def __post_init__(self):
        self.predictions = self.probabilities >= self.thresholds[None, :]

    @property
    def support(self) -> np.ndarray:
        """Positive examples per class."""
        return self.labels.sum(axis=0).astype(int)

    @property
    def precision(self) -> np.ndarray:
        """Per class: right positive predictions over all positive predictions."""
        tp = (self.predictions & (self.labels > 0)).sum(axis=0)
        return safe_ratio(tp, self.predictions.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Per class: right positive predictions over positive examples."""
        tp = (self.predictions & (self.labels > 0)).sum(axis=0)
        return safe_ratio(tp, self.support)

    @property
    def f1(self) -> np.ndarray:
        """Per class: the harmonic mean of precision and recall."""
        return f1_scores(self.precision, self.recall)

    @property
    def auc(self) -> list[float | None]:
        """Per class: ROC AUC of the probabilities (None where a class is all 0 or all 1)."""
        return [
            roc_auc(self.labels[:, c], self.probabilities[:, c])
            for c in range(len(self.class_names))
        ]

    @property
    def subset_accuracy(self) -> float:
        """The share of examples whose every class decision is right."""
        return float(np.mean((self.predictions == (self.labels > 0)).all(axis=1)))

    def to_dict(self) -> dict:
        """A JSON-ready form, as written to `metrics.json`."""
        aucs = [a for a in self.auc if a is not None]
        return {
            "multi_label": True,
            "num_examples": len(self.labels),
            "subset_accuracy": self.subset_accuracy,
            "macro_avg": {
                "precision": float(self.precision.mean()),
                "recall": float(self.recall.mean()),
                "f1": float(self.f1.mean()),
                "auc": float(np.mean(aucs)) if aucs else None,
            },
            "class_names": self.class_names,
            "per_class": per_class_metrics(
                self, threshold=[float(t) for t in self.thresholds], auc=list(self.auc)
            ),
        }

    def to_markdown(self) -> str:
        """A short Markdown summary, as written to `summary.md`."""
        data = self.to_dict()
        lines = [
            "# Evaluation (multi-label)",
            "",
            f"- exact-match accuracy: **{self.subset_accuracy:.2%}** "
            f"on {len(self.labels)} examples",
            f"- macro F1: {data['macro_avg']['f1']:.4f}",
            "",
            "| class | threshold | AUC | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, m in data["per_class"].items():
            auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
            lines.append(
                f"| {name} | {m['threshold']:.3f} | {auc} | {m['precision']:.3f} | "
                f"{m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
            )
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


def multilabel_report(
    labels: Sequence[Sequence[int]] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
) -> MultiLabelReport:
    """Build a multi-label report; thresholds default to each class's best F1 on this data.

    Args:
        labels: `[examples, classes]` multi-hot labels.
        probabilities: `[examples, classes]` predicted probabilities.
        class_names: the class names, in output order.
        thresholds: fixed per-class thresholds (for example chosen on validation data).

    Example:
    >>> r = multilabel_report([[1, 0], [0, 1]], [[0.8, 0.3], [0.2, 0.9]], ["cat", "dog"])
    >>> r.subset_accuracy, r.auc
    (1.0, [1.0, 1.0])
    """
    labels = np.asarray(labels)
    probs = np.asarray(probabilities, dtype=float)
    shape = (len(labels), len(class_names))
    if labels.size == 0:
        raise ValueError("There are no examples to evaluate: the dataset is empty.")
    if labels.shape != shape or probs.shape != shape:
        raise ValueError(
            f"Expected labels and probabilities of shape {shape} for classes "
            f"{list(class_names)}. Received {labels.shape} and {probs.shape}."
        )
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("Multi-label targets must be 0 or 1 (multi-hot rows).")
    chosen = choose_thresholds(labels, probs) if thresholds is None else np.asarray(thresholds)
    return MultiLabelReport(list(class_names), labels.astype(int), probs, chosen.astype(float))
