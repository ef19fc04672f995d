"""Classification metrics: accuracy, per-class precision and recall, the confusion matrix."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf


@dataclass
class ClassificationReport:
    """Metrics of a classifier on a labelled dataset.

    Args:
        class_names: the classes, in label order.
        confusion_matrix: `[true, predicted]` counts.
    """

    class_names: list[str]
    confusion_matrix: np.ndarray

    @property
    def support(self) -> np.ndarray:
        """How many examples of each class there are."""
        return self.confusion_matrix.sum(axis=1)

    @property
    def accuracy(self) -> float:
        """The share of examples predicted correctly."""
        total = self.confusion_matrix.sum()
        return float(np.trace(self.confusion_matrix) / total) if total else 0.0

    @property
    def precision(self) -> np.ndarray:
        """Per class: correct predictions of it over all predictions of it (0 if none)."""
        predicted = self.confusion_matrix.sum(axis=0)
        return np.divide(
            np.diag(self.confusion_matrix),
            predicted,
            out=np.zeros(len(predicted)),
            where=predicted > 0,
        )

    @property
    def recall(self) -> np.ndarray:
        """Per class: correct predictions of it over its examples (0 if it has none)."""
        support = self.support
        return np.divide(
            np.diag(self.confusion_matrix), support, out=np.zeros(len(support)), where=support > 0
        )

    def to_dict(self) -> dict:
        """A JSON-ready form, as written to `metrics.json`."""
        return {
            "accuracy": self.accuracy,
            "num_examples": int(self.confusion_matrix.sum()),
            "class_names": self.class_names,
            "per_class": {
                name: {
                    "precision": float(self.precision[i]),
                    "recall": float(self.recall[i]),
                    "support": int(self.support[i]),
                }
                for i, name in enumerate(self.class_names)
            },
            "confusion_matrix": self.confusion_matrix.tolist(),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the report as JSON."""
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    def __str__(self) -> str:
        width = max(12, *(len(n) for n in self.class_names)) + 2
        lines = [f"accuracy {self.accuracy:.4f} on {int(self.confusion_matrix.sum())} images"]
        lines.append(f"{'class':<{width}}{'precision':>10}{'recall':>10}{'support':>10}")
        for i, name in enumerate(self.class_names):
            lines.append(
                f"{name:<{width}}{self.precision[i]:>10.3f}{self.recall[i]:>10.3f}"
                f"{int(self.support[i]):>10}"
            )
        return "\n".join(lines)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
) -> ClassificationReport:
    """Build a report from true and predicted class indices.

    Args:
        y_true: the true class index of each example.
        y_pred: the predicted class index of each example.
        class_names: the class names, in index order.

    Example:
    >>> report = classification_report([0, 1, 1], [0, 1, 0], ["cat", "dog"])
    >>> report.accuracy, report.recall.tolist()
    (0.6666666666666666, [1.0, 0.5])
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    n = len(class_names)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} and {y_pred.shape}.")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= n):
            raise ValueError(
                f"{name} holds class indices outside 0..{n - 1} for classes {list(class_names)}: "
                f"found {sorted(set(values[(values < 0) | (values >= n)].tolist()))}."
            )
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return ClassificationReport(list(class_names), matrix)


def predict_dataset(model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run a model over a `(pixels, labels)` dataset once; return labels and probabilities.

    Args:
        model: a classifier.
        dataset: batches of `(pixels, labels)`, in a fixed order.

    Example:
    >>> from tfinetune.models import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((3, 32, 32, 3)), [0, 1, 1])).batch(2)
    >>> y, p = predict_dataset(m, ds)
    >>> y.tolist(), p.shape
    ([0, 1, 1], (3, 2))
    """
    labels, probs = [], []
    for x, y in dataset:
        probs.append(np.asarray(model.predict_on_batch(x)))
        labels.append(np.asarray(y))
    if not labels:
        raise ValueError("The dataset is empty: there is nothing to evaluate.")
    return np.concatenate(labels), np.concatenate(probs)


def evaluate_classifier(
    model: keras.Model, dataset: tf.data.Dataset, class_names: Sequence[str]
) -> ClassificationReport:
    """Predict a labelled dataset and report accuracy, precision, recall and confusions.

    Args:
        model: a classifier whose outputs follow `class_names`.
        dataset: batches of `(pixels, labels)`.
        class_names: the class names, in label order.

    Example:
    >>> from tfinetune.models import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 32, 32, 3)), [0, 1])).batch(2)
    >>> evaluate_classifier(m, ds, ["a", "b"]).support.tolist()
    [1, 1]
    """
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model predicts {model.output_shape[-1]} classes but {len(class_names)} class "
            f"names were given: {list(class_names)}."
        )
    labels, probs = predict_dataset(model, dataset)
    return classification_report(labels, probs.argmax(axis=-1), class_names)
