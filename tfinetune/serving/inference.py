"""Predict with an exported SavedModel (or a run folder holding one), from image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.data.images import load_image
from tfinetune.serving.export import LABELS_FILE

SAVED_MODEL_DIR = "saved_model"


def find_saved_model(path: str | os.PathLike) -> Path:
    """Locate the SavedModel in an export folder or in a run folder's `saved_model/`.

    Args:
        path: an export folder or a `tfinetune train` run folder.

    Example:
    >>> find_saved_model("/no/such/run")  # doctest: +SKIP
    FileNotFoundError: ...
    """
    path = Path(path)
    for candidate in (path, path / SAVED_MODEL_DIR):
        if (candidate / "saved_model.pb").is_file():
            return candidate
    raise FileNotFoundError(
        f"No SavedModel found at {str(path)!r} (looked for saved_model.pb there and in "
        f"{SAVED_MODEL_DIR}/). Pass a run folder of `tfinetune train` or a folder written by "
        "tfinetune.export_saved_model."
    )


class ExportedClassifier:
    """A classifier exported by `export_saved_model`, loaded for prediction from files.

    Args:
        path: an export folder or a run folder.

    Example:
    >>> clf = ExportedClassifier("runs/flowers")  # doctest: +SKIP
    >>> clf.predict_files(["rose.jpg"]).shape     # doctest: +SKIP
    (1, 5)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = find_saved_model(path)
        try:
            self._loaded = tf.saved_model.load(str(self.path))
            self._serve = self._loaded.signatures["serving_default"]
        except (tf.errors.OpError, OSError, ValueError, KeyError) as err:
            detail = (str(getattr(err, "message", err)).strip().splitlines() or [""])[0]
            raise ValueError(
                f"The SavedModel in {str(self.path)!r} cannot be loaded ({detail}): it is "
                "damaged or incomplete. Export it again (tfinetune train, or "
                "tfinetune.export_saved_model)."
            ) from None
        labels = self.path / LABELS_FILE
        if not labels.is_file():
            raise FileNotFoundError(
                f"{str(labels)!r} is missing: this SavedModel was not written by tfinetune."
            )
        self.class_names = labels.read_text().splitlines()
        pixels_spec = self._loaded.serve_pixels.concrete_functions[0].structured_input_signature
        self.image_size = tuple(pixels_spec[0][0].shape[1:3])

    def predict_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        """Class probabilities for encoded images, `[len(images), num_classes]`."""
        out = self._serve(image_bytes=tf.constant(list(images), dtype=tf.string))
        return out["probabilities"].numpy()

    def predict_pixels(self, pixels: np.ndarray | tf.Tensor, tta: bool = False) -> np.ndarray:
        """Class probabilities for `uint8` images at the model's size; `tta` adds mirrors."""
        pixels = tf.convert_to_tensor(pixels, dtype=tf.uint8)
        probs = self._loaded.serve_pixels(pixels)["probabilities"].numpy()
        if tta:
            mirrored = self._loaded.serve_pixels(tf.image.flip_left_right(pixels))
            probs = (probs + mirrored["probabilities"].numpy()) / 2
        return probs

    def predict_files(
        self,
        paths: Sequence[str],
        batch_size: int = 32,
        tta: bool = False,
        verbose: bool = False,
    ) -> np.ndarray:
        """Class probabilities for image files, read as stored on disk.

        Args:
            paths: image files (check them first with `tfinetune.find_bad_files`).
            batch_size: images per call.
            tta: average each image's prediction with its mirror's (decoding as served).
            verbose: show a progress bar.
        """
        progress = keras.utils.Progbar(len(paths), unit_name="image") if verbose else None
        chunks = []
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            if tta:
                pixels = tf.stack([load_image(p, self.image_size) for p in batch])
                chunks.append(self.predict_pixels(pixels, tta=True))
            else:
                chunks.append(self.predict_bytes([Path(p).read_bytes() for p in batch]))
            if progress:
                progress.add(len(batch))
        if not chunks:
            return np.zeros((0, len(self.class_names)), dtype="float32")
        return np.concatenate(chunks)
