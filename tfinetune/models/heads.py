"""Classification heads: pooling, dropout, optional hidden layers and a float32 output."""

from __future__ import annotations

from collections.abc import Sequence

import keras

HEAD_PREFIX = "head_"
_POOLING = {
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
}


def build_head(
    features: keras.KerasTensor,
    num_classes: int,
    *,
    pooling: str = "avg",
    dropout: float = 0.2,
    hidden_units: Sequence[int] = (),
    activation: str = "softmax",
) -> keras.KerasTensor:
    """Attach a classification head to a feature map.

    Every layer is named `head_*`, so the head is one layer group. The output layer computes
    in float32 so probabilities stay exact under a mixed-precision policy.

    Args:
        features: a `[batch, h, w, c]` feature map (or `[batch, c]` features).
        num_classes: the number of output classes (at least 2).
        pooling: `"avg"` or `"max"`, applied to a feature map.
        dropout: the dropout rate before each dense layer, in [0, 1).
        hidden_units: sizes of optional hidden dense layers (ReLU).
        activation: the output activation: `"softmax"`, `"sigmoid"` (multi-label) or `None`.

    Example:
    >>> x = keras.Input((4, 4, 8))
    >>> keras.Model(x, build_head(x, 3)).output_shape
    (None, 3)
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an int of at least 2. Received: num_classes={num_classes!r}"
        )
    if pooling not in _POOLING:
        raise ValueError(
            f"pooling must be one of {sorted(_POOLING)}. Received: pooling={pooling!r}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")

    # === Layers ===
    x = features
    if len(x.shape) == 4:
        x = _POOLING[pooling](name=f"{HEAD_PREFIX}pool")(x)
    for i, units in enumerate(hidden_units):
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"{HEAD_PREFIX}dense_{i}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    return keras.layers.Dense(
        num_classes, activation=activation, dtype="float32", name=f"{HEAD_PREFIX}predictions"
    )(x)
