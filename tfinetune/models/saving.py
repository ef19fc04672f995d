"""Loading a saved tfinetune model for inference, with its custom layers registered."""

from __future__ import annotations

import os
from pathlib import Path

import keras

# Importing these registers tfinetune's layers with Keras, so `.keras` files that use
# them deserialize in any process.
from tfinetune.models import heads, hub, mirror, normalization  # noqa: F401


def load_keras_model(path: str | os.PathLike) -> keras.Model:
    """Load a `.keras` file for inference (not compiled: no optimizer state is needed).

    Args:
        path: a `.keras` file written by `model.save` (for example a run's `model.keras`).

    Example:
    >>> import tempfile
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> m.save(tempfile.mkdtemp() + "/m.keras")
    >>> load_keras_model("/no/such/m.keras")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: '/no/such/m.keras' does not exist...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist. Pass a .keras model file.")
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{str(path)!r} cannot be loaded as a Keras model ({first}). Is it a complete "
            ".keras file written by model.save?"
        ) from None
