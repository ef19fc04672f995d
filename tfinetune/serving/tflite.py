"""TFLite exports (float32, float16, dynamic-range and full-integer int8) and their loader.

The route: the Keras model is written as a SavedModel with one fixed-size endpoint
(`keras.export.ExportArchive`), which `tf.lite.TFLiteConverter.from_saved_model` converts
with TFLite's built-in operators only, so the file runs on a stock interpreter. (Converting
with `from_keras_model` or from a concrete function aborts the process on TensorFlow 2.16.)
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.atomic import folder_lock, staged_folder
from tfinetune.models.mirror import mirrors
from tfinetune.serving.classifier import Classifier, first_line
from tfinetune.serving.export import read_contract, write_contract

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
MODEL_FILE = "model.tflite"
CALIBRATION_IMAGES = 200


def _fixed_size_saved_model(model: keras.Model, folder: str) -> None:
    size = tuple(model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda pixels: model(pixels, training=False),
        input_signature=[tf.TensorSpec([1, *size], tf.float32, name="pixels")],
    )
    archive.write_out(folder, verbose=False)


def convert_to_tflite(
    model: keras.Model,
    quantize: str = "float32",
    representative: Iterable[np.ndarray] | None = None,
) -> bytes:
    """Convert a classifier to a TFLite flatbuffer taking one image of RGB pixels 0..255.

    The input is `float32[1, height, width, 3]`; with `int8`, `uint8[1, height, width, 3]`
    (the raw pixels: the converter's input scale is about 1 and zero point 0). The output
    is always `float32` probabilities.

    Args:
        model: a classifier taking RGB pixels in 0..255.
        quantize: "float32", "float16" (weights), "dynamic" (int8 weights, float activations)
            or "int8" (weights and activations; needs `representative`).
        representative: `uint8` or float images `[height, width, 3]` to calibrate int8 on,
            drawn from the training data (a few hundred are plenty).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> len(convert_to_tflite(m, "dynamic")) > 1000
    True
    """
    if quantize not in QUANTIZATIONS:
        choices = ", ".join(QUANTIZATIONS)
        raise ValueError(f"Unknown quantization {quantize!r}. Use one of {choices}.")
    with tempfile.TemporaryDirectory() as folder:
        _fixed_size_saved_model(model, folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            images = list(representative or [])
            if not images:
                raise ValueError("int8 quantization needs representative images to calibrate on.")

            def calibration():
                for image in images[:CALIBRATION_IMAGES]:
                    yield [np.asarray(image, dtype="float32")[None]]

            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        return converter.convert()


def export_tflite(
    model: keras.Model,
    out_dir: str | os.PathLike,
    class_names: Sequence[str],
    *,
    quantize: str = "float32",
    representative: Iterable[np.ndarray] | None = None,
    contract: dict | None = None,
    overwrite: bool = False,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Write `model.tflite`, `labels.txt` and `preprocessing.json` into a new folder.

    Args:
        model: a classifier taking RGB pixels in 0..255.
        out_dir: the folder to create.
        class_names: the class names, in output order.
        quantize: see `convert_to_tflite`.
        representative: calibration images for int8 (see `convert_to_tflite`).
        contract: the preprocessing facts to store (resize mode, normalisation, ...).
        overwrite: replace an earlier tfinetune TFLite export in `out_dir` (nothing else).
        check: called with the written folder before it is moved into place; an exception
            from it abandons the export.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> import tempfile
    >>> out = export_tflite(m, tempfile.mkdtemp() + "/lite", ["a", "b"], quantize="float16")
    >>> sorted(p.name for p in out.iterdir())
    ['.tfinetune', 'labels.txt', 'model.tflite', 'preprocessing.json']
    """
    flatbuffer = convert_to_tflite(model, quantize, representative)
    out_dir = Path(out_dir)
    with folder_lock(out_dir), staged_folder(out_dir, "tflite", overwrite) as staging:
        (staging / MODEL_FILE).write_bytes(flatbuffer)
        facts = {"resize": "stretch", **(contract or {})}
        facts.update(image_size=list(model.input_shape[1:3]), quantize=quantize)
        facts["mirror"] = mirrors(model)
        facts["input"] = (
            "uint8 RGB pixels 0..255, one image [1, height, width, 3]"
            if quantize == "int8"
            else "float32 RGB pixels 0..255, one image [1, height, width, 3]"
        )
        write_contract(staging, class_names, facts)  # beside the model, for phone apps
        if check is not None:
            check(staging)
    return out_dir


def _interpreter(path: str):
    """LiteRT's interpreter where installed (`pip install ai-edge-litert`), else TensorFlow's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        with warnings.catch_warnings():  # TensorFlow's says it moved to ai_edge_litert
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(model_path=path)
    return Interpreter(model_path=path)


class TFLiteClassifier(Classifier):
    """A `.tflite` file written by `export_tflite`, run with the TFLite interpreter.

    Args:
        path: the `.tflite` file, or the folder holding `model.tflite`.

    Example:
    >>> TFLiteClassifier("exports/flowers-int8").class_names  # doctest: +SKIP
    ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']
    """

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        self.path = path / MODEL_FILE if path.is_dir() else path
        if not self.path.is_file():
            raise FileNotFoundError(f"{str(self.path)!r} does not exist.")
        self.class_names, contract = read_contract(self.path.parent)
        self.image_size = tuple(contract["image_size"])
        self._read_contract(contract)
        self.quantize = contract.get("quantize")
        try:
            self._interpreter = _interpreter(str(self.path))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ValueError(
                f"{str(self.path)!r} is not a usable TFLite model ({first_line(err)}): it is "
                "damaged or incomplete. Export it again (`tfinetune export --format tflite`)."
            ) from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]

    def _predict_pixels(self, pixels: tf.Tensor) -> np.ndarray:
        dtype = self._input["dtype"]
        scale, zero_point = self._input["quantization"]
        rows = []
        for image in np.asarray(pixels, dtype="float32"):
            if scale:  # a quantized input: map pixels to its integer scale
                image = np.round(image / scale + zero_point)
                image = np.clip(image, np.iinfo(dtype).min, np.iinfo(dtype).max)
            self._interpreter.set_tensor(self._input["index"], image[None].astype(dtype))
            self._interpreter.invoke()
            rows.append(np.array(self._interpreter.get_tensor(self._output["index"])[0]))
        return np.stack(rows) if rows else np.zeros((0, len(self.class_names)), "float32")
