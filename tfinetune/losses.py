"""Losses: cross-entropy with label smoothing for integer labels, and choosing a loss."""

from __future__ import annotations

import keras
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
