"""`HeadOptions`: the shape of the new head, one object wherever a head is chosen.

Plain data, importing neither Keras nor TensorFlow: `build_head` and `build_classifier`
take it, and an experiment file's `[model]` section is one (with the backbone added).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfinetune.fields import option

POOLINGS = ("avg", "max", "avgmax", "attention")


@dataclass
class HeadOptions:
    """The head's shape: pooling, hidden layers, dropout and BatchNormalization.

    Args:
        pooling: `"avg"`, `"max"`, `"avgmax"` (both, concatenated), or for a sequence of
            frames `[batch, time, c]` also `"attention"` (a learned weighting of frames).
        hidden_units: sizes of optional hidden dense layers (ReLU).
        dropout: the dropout rate before each dense layer, in [0, 1).
        batch_norm: a BatchNormalization layer after each hidden layer.

    Example:
    >>> HeadOptions(hidden_units=[256]).dropout
    0.2
    """

    pooling: str = option(
        "avg", "how the head pools the backbone's features (attention: sound only)",
        flag="--pooling", choices=POOLINGS,
    )  # fmt: skip
    hidden_units: list[int] = option(
        [], "sizes of hidden head layers, e.g. [256, 128] (flag: 256,128)", flag="--hidden-units"
    )
    dropout: float = option(
        0.2, "dropout before each dense layer of the head", flag="--head-dropout"
    )
    batch_norm: bool = option(
        False, "BatchNormalization after each hidden layer", flag="--head-batchnorm"
    )
