"""The single-label report: accuracy, per-class metrics, calibration, confusions, top losses.

Every metric is computed from true labels and predicted probabilities with NumPy; the tests
check each one against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tfinetune.evaluation.metrics import (
    calibration_bins,
    f1_scores,
    per_class_metrics,
    safe_ratio,
)

TOP_K = (3, 5)


@dataclass
class ClassificationReport:
    """Metrics of a single-label classifier on a labelled dataset.

    Args:
        class_names: the classes, in label order.
        labels: the true class index of each example.
        probabilities: `[examples, classes]` predicted probabilities.
        uncalibrated: the probabilities before a temperature was applied, if one was.
        temperature: the temperature that turned `uncalibrated` into `probabilities`.
    """

    class_names: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    uncalibrated: np.ndarray | None = None
    temperature: float | None = None
    predictions: np.ndarray = field(init=False)
    confusion_matrix: np.ndarray = field(init=False)

    def __post_init__(self):
        n = len(self.class_names)
        self.predictions = self.probabilities.argmax(axis=1)
        self.confusion_matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(self.confusion_matrix, (self.labels, self.predictions), 1)

    # === Metrics ===

    @property
    def support(self) -> np.ndarray:
        """How many examples of each class there are."""
        return self.confusion_matrix.sum(axis=1)

    @property
    def accuracy(self) -> float:
        """The share of examples whose top prediction is right."""
        return float(np.mean(self.predictions == self.labels))

    @property
    def precision(self) -> np.ndarray:
        """Per class: right predictions of it over all predictions of it (0 if none)."""
        return safe_ratio(np.diag(self.confusion_matrix), self.confusion_matrix.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Per class: right predictions of it over its examples (0 if it has none)."""
        return safe_ratio(np.diag(self.confusion_matrix), self.support)

    @property
    def f1(self) -> np.ndarray:
        """Per class: the harmonic mean of precision and recall (0 when both are 0)."""
        return f1_scores(self.precision, self.recall)

    def average(self, metric: str, how: str = "macro") -> float:
        """The `"macro"` (every class alike) or `"weighted"` (by support) mean of a metric."""
        values = getattr(self, metric)
        if how == "macro":
            return float(values.mean())
        total = self.support.sum()
        return float((values * self.support).sum() / total) if total else 0.0

    def top_k_accuracy(self, k: int) -> float:
        """The share of examples whose true class is among the `k` most probable."""
        top = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return float(np.mean((top == self.labels[:, None]).any(axis=1)))

    @property
    def losses(self) -> np.ndarray:
        """Per example: the cross-entropy, `-log p(true class)`."""
        p_true = self.probabilities[np.arange(len(self.labels)), self.labels]
        return -np.log(np.clip(p_true, 1e-12, 1.0))

    @property
    def expected_calibration_error(self) -> float:
        """How far confidence is from accuracy, averaged over 15 confidence bins."""
        return self._calibration_error(self.probabilities)

    @property
    def uncalibrated_calibration_error(self) -> float | None:
        """The calibration error before the temperature was applied (None without one)."""
        return None if self.uncalibrated is None else self._calibration_error(self.uncalibrated)

    def _calibration_error(self, probabilities: np.ndarray) -> float:
        counts, accuracy, confidence = calibration_bins(
            (self.predictions == self.labels).astype(float), probabilities.max(axis=1)
        )
        return float((counts * np.abs(accuracy - confidence)).sum() / counts.sum())

    def calibration_line(self) -> str:
        """`calibration error 0.1340 -> 0.0210 (temperature 0.62)`, or the error alone."""
        if self.temperature is None:
            return f"calibration error {self.expected_calibration_error:.4f}"
        return (
            f"calibration error {self.uncalibrated_calibration_error:.4f} -> "
            f"{self.expected_calibration_error:.4f} (temperature {self.temperature:.3g})"
        )

    def most_confused(self, n: int = 5) -> list[tuple[str, str, int]]:
        """The `n` most frequent mistakes as `(true class, predicted class, count)`."""
        off = self.confusion_matrix.copy()
        np.fill_diagonal(off, 0)
        order = np.argsort(-off, axis=None, kind="stable")[:n]
        pairs = [np.unravel_index(i, off.shape) for i in order]
        return [
            (self.class_names[t], self.class_names[p], int(off[t, p]))
            for t, p in pairs
            if off[t, p]
        ]

    # === Output ===

    def to_dict(self) -> dict:
        """A JSON-ready form, as written to `metrics.json`."""
        n = len(self.class_names)
        return {
            "accuracy": self.accuracy,
            "num_examples": len(self.labels),
            "top_k_accuracy": {str(k): self.top_k_accuracy(k) for k in TOP_K if k < n},
            "macro_avg": {m: self.average(m) for m in ("precision", "recall", "f1")},
            "weighted_avg": {m: self.average(m, "weighted") for m in ("precision", "recall", "f1")},
            "expected_calibration_error": self.expected_calibration_error,
            **self._calibration_dict(),
            "class_names": self.class_names,
            "per_class": per_class_metrics(self),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "most_confused": [
                {"true": t, "predicted": p, "count": c} for t, p, c in self.most_confused()
            ],
        }

    def _calibration_dict(self) -> dict:
        if self.temperature is None:
            return {}
        return {
            "calibration": {
                "temperature": self.temperature,
                "expected_calibration_error_before": self.uncalibrated_calibration_error,
                "expected_calibration_error_after": self.expected_calibration_error,
                "fitted_on": "these examples",
            }
        }

    def to_markdown(self) -> str:
        """A short Markdown summary, as written to `summary.md`."""
        data = self.to_dict()
        lines = [
            "# Evaluation",
            "",
            f"- accuracy: **{self.accuracy:.2%}** on {len(self.labels)} examples",
            *(f"- top-{k} accuracy: {v:.2%}" for k, v in data["top_k_accuracy"].items()),
            f"- macro F1: {data['macro_avg']['f1']:.4f}, weighted F1: "
            f"{data['weighted_avg']['f1']:.4f}",
            f"- expected calibration error: {self.expected_calibration_error:.4f}",
            *self._calibration_markdown(),
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, m in data["per_class"].items():
            lines.append(
                f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                f"{m['support']} |"
            )
        if data["most_confused"]:
            lines += ["", "Most confused (true → predicted: count):", ""]
            lines += [
                f"- {c['true']} → {c['predicted']}: {c['count']}" for c in data["most_confused"]
            ]
        return "\n".join(lines) + "\n"

    def _calibration_markdown(self) -> list[str]:
        if self.temperature is None:
            return []
        return [
            f"- calibrated by temperature {self.temperature:.3g}, fitted on these examples: "
            f"calibration error {self.uncalibrated_calibration_error:.4f} before, "
            f"{self.expected_calibration_error:.4f} after (accuracy unchanged)"
        ]

    def __str__(self) -> str:
        width = max(12, *(len(n) for n in self.class_names)) + 2
        lines = [
            f"accuracy {self.accuracy:.4f} on {len(self.labels)} examples, macro F1 "
            f"{self.average('f1'):.4f}, {self.calibration_line()}",
            f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
        ]
        for i, name in enumerate(self.class_names):
            lines.append(
                f"{name:<{width}}{self.precision[i]:>10.3f}{self.recall[i]:>10.3f}"
                f"{self.f1[i]:>10.3f}{int(self.support[i]):>10}"
            )
        return "\n".join(lines)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
) -> ClassificationReport:
    """Build a single-label report from true class indices and predicted probabilities.

    Args:
        y_true: the true class index of each example.
        probabilities: `[examples, classes]` predicted probabilities (or one-hot predictions).
        class_names: the class names, in index order.

    Example:
    >>> report = classification_report([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["a", "b"])
    >>> report.accuracy, report.recall.tolist()
    (0.6666666666666666, [1.0, 0.5])
    """
    labels = np.asarray(y_true, dtype=int)
    probs = np.asarray(probabilities, dtype=float)
    n = len(class_names)
    if labels.size == 0:
        raise ValueError("There are no examples to evaluate: the dataset is empty.")
    if probs.ndim != 2 or probs.shape != (len(labels), n):
        raise ValueError(
            f"Expected probabilities of shape ({len(labels)}, {n}) for {len(labels)} labels and "
            f"classes {list(class_names)}. Received shape {probs.shape}."
        )
    outside = labels[(labels < 0) | (labels >= n)]
    if outside.size:
        raise ValueError(
            f"The labels hold class indices outside 0..{n - 1}, the model's classes "
            f"{list(class_names)}: found {sorted(set(outside.tolist()))}. Check that the data "
            "uses the model's class order."
        )
    return ClassificationReport(list(class_names), labels, probs)


def top_losses(
    report: ClassificationReport,
    paths: Sequence[str] | None = None,
    k: int = 9,
    key: str = "path",
) -> list[dict]:
    """The `k` examples with the highest loss: index, path, true and predicted class.

    Args:
        report: a single-label report.
        paths: the file of each example (or its text), in the report's order.
        k: how many.
        key: what `paths` holds, the key it is stored under: "path" or "text".

    Example:
    >>> r = classification_report([0, 1], [[0.2, 0.8], [0.3, 0.7]], ["a", "b"])
    >>> [(t["true"], t["predicted"]) for t in top_losses(r, k=1)]
    [('a', 'b')]
    """
    order = np.argsort(-report.losses, kind="stable")[:k]
    return [
        {
            "index": int(i),
            key: str(paths[i]) if paths is not None else None,
            "true": report.class_names[report.labels[i]],
            "predicted": report.class_names[report.predictions[i]],
            "probability": float(report.probabilities[i].max()),
            "probability_of_true": float(report.probabilities[i, report.labels[i]]),
            "loss": float(report.losses[i]),
        }
        for i in order
    ]
