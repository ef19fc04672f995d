"""Loading a saved tfinetune model for inference, with its custom layers registered."""

from __future__ import annotations

import os
from pathlib import Path

import keras


def load_model(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Load a `.keras` file that tfinetune (or `model.save` on a tfinetune model) wrote.

    `keras.saving.load_model` reads the same files once `tfinetune` is imported; this adds
    clear errors. A model built on a TF Hub SavedModel carries it inside the file.

    Args:
        path: a `.keras` file written by `model.save` (for example a run's `model.keras`).
        compile: restore the optimizer, loss and metrics too (to go on training); by
            default the model is loaded for inference.

    Example:
    >>> import tempfile
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> m.save(tempfile.mkdtemp() + "/m.keras")
    >>> load_model("/no/such/m.keras")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: '/no/such/m.keras' does not exist...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist. Pass a .keras model file.")
    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{str(path)!r} cannot be loaded as a Keras model ({first}). Is it a complete "
            ".keras file written by model.save?"
        ) from None


load_keras_model = load_model  # the name the steps use
