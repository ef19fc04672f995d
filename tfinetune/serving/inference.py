"""Predict image files with any artifact: a run folder, a SavedModel, `.keras` or `.tflite`.

`load_classifier` picks the loader from the path. Every loader decodes and resizes files
as training did (the export's `preprocessing.json` says how) and returns the model's outputs:
probabilities, or numbers for a regression model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.data.audio import decode_clip
from tfinetune.models.classifier import modality_of, sample_rate_of
from tfinetune.models.heads import model_info, task_of
from tfinetune.models.mirror import mirrors
from tfinetune.models.saving import load_keras_model
from tfinetune.serving.classifier import Classifier, first_line
from tfinetune.serving.export import LABELS_FILE, input_contract, read_contract, versions_in
from tfinetune.serving.signatures import (
    AUDIO_INPUT,
    BYTES_INPUT,
    BYTES_SIGNATURE,
    IMAGES_SIGNATURE,
    TEXT_INPUT,
)
from tfinetune.serving.tflite import TFLiteClassifier

SAVED_MODEL_DIR = "saved_model"


def find_saved_model(path: str | os.PathLike) -> Path:
    """Locate a SavedModel: a version folder, a model base folder (its highest version), or
    a run folder (its `saved_model/` base folder).

    Args:
        path: a version folder, a base folder holding integer versions, or a run folder.

    Example:
    >>> find_saved_model("/no/such/run")  # doctest: +SKIP
    FileNotFoundError: ...
    """
    path = Path(path)
    for candidate in (path, path / SAVED_MODEL_DIR):
        if (candidate / "saved_model.pb").is_file():
            return candidate
        versions = versions_in(candidate)
        if versions and (candidate / str(versions[-1]) / "saved_model.pb").is_file():
            return candidate / str(versions[-1])
    raise FileNotFoundError(
        f"No model found at {str(path)!r} (looked for saved_model.pb there, in its highest "
        f"integer version folder and in {SAVED_MODEL_DIR}/). Pass a run folder of `tfinetune "
        "train`, a folder written by `tfinetune export`, a .keras or a .tflite file."
    )


class ExportedClassifier(Classifier):
    """A SavedModel exported by tfinetune, loaded for prediction from files.

    Files go through `serving_default` as stored on disk (decoded inside the graph); with
    `tta`, through `serve_images` and its mirror.

    Args:
        path: a version folder, a model base folder or a run folder.

    Example:
    >>> clf = ExportedClassifier("runs/flowers")  # doctest: +SKIP
    >>> clf.predict_files(["rose.jpg"]).shape     # doctest: +SKIP
    (1, 5)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = find_saved_model(path)
        self.class_names, contract = read_contract(self.path)
        self._read_contract(contract)
        if self.modality == "image":
            self.image_size = tuple(contract["image_size"])
        try:
            self._loaded = tf.saved_model.load(str(self.path))
            self._serve = self._loaded.signatures[BYTES_SIGNATURE]
            if self.modality == "image":
                self._images = self._loaded.signatures[IMAGES_SIGNATURE]
        except (tf.errors.OpError, OSError, ValueError, KeyError) as err:
            raise ValueError(
                f"The SavedModel in {str(self.path)!r} cannot be loaded ({first_line(err)}): "
                "it is damaged, incomplete or not a tfinetune export. Export it again "
                "(`tfinetune export`)."
            ) from None

    def signature(self, name: str):
        """One of the SavedModel's signatures, for example "serve_examples"."""
        return self._loaded.signatures[name]

    def predict_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        """Class probabilities for encoded images, `[len(images), num_classes]`."""
        out = self._serve(**{BYTES_INPUT: tf.constant(list(images), dtype=tf.string)})
        return out[self.output_key].numpy()

    def _predict_pixels(self, pixels: tf.Tensor) -> np.ndarray:
        return self._images(pixels)[self.output_key].numpy()

    def _predict_signals(self, inputs: list) -> np.ndarray:
        name = TEXT_INPUT if self.modality == "text" else AUDIO_INPUT
        out = self._serve(**{name: tf.constant(inputs, dtype=tf.string)})
        return out[self.output_key].numpy()

    def _predict_batch(self, paths: Sequence[str], tta: bool) -> np.ndarray:
        if (tta and not self.mirror) or self.modality != "image":
            return super()._predict_batch(paths, tta)
        return self.predict_bytes([Path(p).read_bytes() for p in paths])


def keras_contract(path: Path, model: keras.Model) -> tuple[list[str], dict]:
    """Class names and contract for a `.keras` file: what the model carries itself (see
    `tfinetune.models.heads.set_model_info`), else its folder's export, or `labels.txt`.

    Args:
        path: the `.keras` file.
        model: the model loaded from it.
    """
    info = model_info(model)
    if info.get("class_names"):
        facts = {**input_contract(model, info.get("resize", "stretch")), "task": task_of(model)}
        return [str(c) for c in info["class_names"]], {**facts, **info}
    try:
        return read_contract(find_saved_model(path.parent))
    except FileNotFoundError:
        pass
    labels = path.parent / LABELS_FILE
    if not labels.is_file():
        raise FileNotFoundError(
            f"The model {str(path)!r} does not carry its class names and has no {LABELS_FILE} "
            "beside it. Keep the model in its run folder, or put its class names, one per "
            "line, in "
            f"{str(labels)!r}."
        )
    return labels.read_text().splitlines(), {}


class KerasClassifier(Classifier):
    """A `.keras` model file, with the class names it carries (or its run folder's).

    Args:
        path: the `.keras` file (a tfinetune run's carries its class names; for older or
            other files, its folder holds `labels.txt` or a tfinetune export).

    Example:
    >>> KerasClassifier("runs/flowers/model.keras").class_names  # doctest: +SKIP
    ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.model = load_keras_model(self.path)
        self.class_names, contract = keras_contract(self.path, self.model)
        self.task = task_of(self.model)
        self._read_contract(contract)
        self.modality = modality_of(self.model)
        self.mirror = mirrors(self.model)
        if self.modality == "image":
            self.image_size = tuple(self.model.input_shape[1:3])

    def _predict_pixels(self, pixels: tf.Tensor) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(tf.cast(pixels, tf.float32)))

    def _predict_signals(self, inputs: list) -> np.ndarray:
        if self.modality == "text":
            return np.asarray(self.model.predict_on_batch(tf.constant(inputs, tf.string)))
        rate, samples = sample_rate_of(self.model), self.model.input_shape[1]
        waves = tf.stack([decode_clip(tf.constant(b), rate, samples) for b in inputs])
        return np.asarray(self.model.predict_on_batch(waves))


def load_classifier(path: str | os.PathLike) -> Classifier:
    """Load any tfinetune artifact for prediction, choosing the loader from the path.

    Args:
        path: a run folder, a SavedModel version or base folder, a `.keras` or a `.tflite`
            file (or a folder written by `tfinetune export --format tflite`).

    Example:
    >>> load_classifier("runs/flowers").class_names  # doctest: +SKIP
    ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']
    """
    path = Path(path)
    if path.suffix == ".keras" and path.is_file():
        return KerasClassifier(path)
    if path.suffix == ".tflite" or (path / "model.tflite").is_file():
        return TFLiteClassifier(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist. Pass a run folder of `tfinetune train`, a SavedModel "
            "folder, a .keras or a .tflite file."
        )
    return ExportedClassifier(path)
