"""Losses: choosing one for the labels, and cross-entropy with label smoothing."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfinetune")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer labels with label smoothing.

    Keras's `SparseCategoricalCrossentropy` has no `label_smoothing`; this one-hot encodes
    the labels and calls Keras's `categorical_crossentropy` with it, so the targets become
    `(1 - label_smoothing) * one_hot + label_smoothing / num_classes`.

    Args:
        label_smoothing: how much probability to spread over all classes, in [0, 1).
        from_logits: whether predictions are logits rather than probabilities.
        name: the loss name.

    Example:
    >>> import numpy as np
    >>> loss = SmoothedSparseCategoricalCrossentropy(label_smoothing=0.1)
    >>> round(float(loss(np.array([0]), np.array([[0.9, 0.1]]))), 4)
    0.2152
    """

    def __init__(
        self,
        label_smoothing: float = 0.1,
        from_logits: bool = False,
        name: str = "smoothed_sparse_categorical_crossentropy",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1). Received: {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
        one_hot = ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "from_logits": self.from_logits,
        }


def resolve_loss(loss: str | keras.losses.Loss, label_smoothing: float = 0.0):
    """`loss`, with `label_smoothing` applied through Keras's own loss arguments.

    Args:
        loss: a Keras loss name or object.
        label_smoothing: 0 for `loss` unchanged; otherwise a cross-entropy loss is smoothed.

    Example:
    >>> type(resolve_loss("categorical_crossentropy", 0.1)).__name__
    'CategoricalCrossentropy'
    """
    if not label_smoothing:
        return loss
    if not 0.0 < label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1). Received: {label_smoothing!r}")
    name = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
    from_logits = bool(getattr(loss, "from_logits", False))
    if name in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy"):
        return SmoothedSparseCategoricalCrossentropy(label_smoothing, from_logits=from_logits)
    if name in ("categorical_crossentropy", "CategoricalCrossentropy"):
        return keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing
        )
    if name in ("binary_crossentropy", "BinaryCrossentropy"):
        return keras.losses.BinaryCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing
        )
    raise ValueError(
        f"label_smoothing applies to cross-entropy losses; the loss is {name!r}. Use "
        f"label_smoothing=0 or a (sparse/binary) cross-entropy loss."
    )


def default_loss(dataset: Any, task: str = "single_label") -> str:
    """The loss for a task and its labels.

    Single-label: sparse cross-entropy for class indices, categorical for one-hot (or mixed)
    rows. Multi-label: binary cross-entropy. Regression: mean squared error.

    Args:
        dataset: a `tf.data` dataset of `(inputs, labels)` batches, a `(inputs, labels)` pair
            of arrays, or a `keras.utils.PyDataset` of such batches.
        task: "single_label", "multi_label" or "regression" (see `tfinetune.models.task_of`).

    Example:
    >>> import tensorflow as tf
    >>> default_loss(tf.data.Dataset.from_tensors((tf.zeros([2, 4]), tf.zeros([2, 3]))))
    'categorical_crossentropy'
    """
    if task == "multi_label":
        return "binary_crossentropy"
    if task == "regression":
        return "mean_squared_error"
    shape = _label_shape(dataset)
    if shape is not None and len(shape) >= 2 and shape[-1] != 1:
        return "categorical_crossentropy"
    return "sparse_categorical_crossentropy"


def _label_shape(data: Any) -> tuple | None:
    """The labels' shape (None where unknown) for any of the forms `default_loss` takes."""
    spec = getattr(data, "element_spec", None)
    if spec is not None:  # tf.data
        shape = spec[1].shape
        return None if shape.rank is None else tuple(shape)
    labels = data[1] if isinstance(data, tuple) else data[0][1]  # arrays; a PyDataset's batch
    return np.shape(labels)


def default_metrics(task: str = "single_label") -> list[str | keras.metrics.Metric]:
    """New metric objects that suit a task: accuracy; accuracy and AUC; MAE and RMSE.

    Args:
        task: "single_label", "multi_label" or "regression".

    Example:
    >>> [m if isinstance(m, str) else m.name for m in default_metrics("regression")]
    ['mae', 'rmse']
    """
    if task == "multi_label":
        return [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(multi_label=True, name="auc"),
        ]
    if task == "regression":
        return [
            keras.metrics.MeanAbsoluteError(name="mae"),
            keras.metrics.RootMeanSquaredError(name="rmse"),
        ]
    return ["accuracy"]
