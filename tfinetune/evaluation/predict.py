"""Running a classifier over a labelled dataset, and reporting on what it predicted."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfinetune.evaluation.multilabel import MultiLabelReport, multilabel_report
from tfinetune.evaluation.regression import RegressionReport, regression_report
from tfinetune.evaluation.report import ClassificationReport, classification_report


def predict_dataset(
    model: keras.Model, dataset: tf.data.Dataset, tta: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Run a model over a `(pixels, labels)` dataset once; return labels and probabilities.

    Args:
        model: a classifier.
        dataset: batches of `(pixels, labels)`, in a fixed order.
        tta: test-time augmentation: average the predictions of each image and its mirror
            (leave it off for a model built with `mirror=True`, which does it itself).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((3, 32, 32, 3)), [0, 1, 1])).batch(2)
    >>> y, p = predict_dataset(m, ds)
    >>> y.tolist(), p.shape
    ([0, 1, 1], (3, 2))
    """
    labels, probs = [], []
    for x, y in dataset:
        p = np.asarray(model.predict_on_batch(x))
        if tta:
            p = (p + np.asarray(model.predict_on_batch(tf.image.flip_left_right(x)))) / 2
        probs.append(p)
        labels.append(np.asarray(y))
    if not labels:
        raise ValueError("The dataset is empty: there is nothing to evaluate.")
    return np.concatenate(labels), np.concatenate(probs)


def evaluate_classifier(
    model: keras.Model,
    dataset: tf.data.Dataset,
    class_names: Sequence[str],
    tta: bool = False,
    thresholds: Sequence[float] | None = None,
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """Predict a labelled dataset and report on it, as the labels show the task.

    Args:
        model: a classifier whose outputs follow `class_names` (or a regressor).
        dataset: batches of `(pixels, labels)`: class indices, multi-hot rows, or float
            regression targets.
        class_names: the class names, in label order (regression: the target's name).
        tta: average each image's prediction with its mirror's.
        thresholds: multi-label: the per-class thresholds (default: each class's best F1 on
            this data, which flatters it; pass those chosen on validation data).

    Returns:
        A `ClassificationReport`, a `MultiLabelReport` for multi-hot labels, or a
        `RegressionReport` for float targets.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
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
    labels, probs = predict_dataset(model, dataset, tta=tta)
    if labels.ndim == 1 and labels.dtype.kind == "f":
        task = "regression"
    else:
        task = "multi_label" if labels.ndim == 2 else "single_label"
    return report_for(task, labels, probs, class_names, thresholds)


def report_for(
    task: str,
    labels: np.ndarray,
    outputs: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | None = None,
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """The report that suits a task, from labels and the model's outputs.

    Args:
        task: "single_label", "multi_label" or "regression".
        labels: class indices (one-hot rows are reduced to indices), multi-hot rows, or
            targets.
        outputs: probabilities, or predicted numbers.
        class_names: the class names (regression: the target's name).
        thresholds: multi-label: fixed per-class thresholds (default: best F1 on this data).

    Example:
    >>> report_for("regression", np.array([1.0, 2.0]), np.array([[1.0], [2.5]]), ["y"]).mae
    0.25
    """
    if task == "regression":
        return regression_report(labels, outputs, class_names[0])
    if task == "multi_label":
        return multilabel_report(labels, outputs, class_names, thresholds)
    if labels.ndim == 2:  # one-hot, because the training augmentation mixes labels
        labels = labels.argmax(axis=1)
    return classification_report(labels, outputs, class_names)
