"""Exports for TF Serving, each checked to predict what the Keras model predicts.

An export is written to a temporary folder beside its destination, loaded back and compared
with the Keras model, and only then moved into place: a failed export leaves nothing behind,
and `overwrite` replaces only an earlier tfinetune export, as a whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.atomic import staged_folder
from tfinetune.data.images import RESIZE_MODES, decode_and_resize

LABELS_FILE = "labels.txt"
METADATA_FILE = "tfinetune.json"


class ExportCheckError(RuntimeError):
    """The exported model does not predict what the Keras model predicts."""


def _serving_functions(model: keras.Model, class_names: Sequence[str], resize: str = "stretch"):
    height, width = model.input_shape[1:3]
    labels = tf.constant(list(class_names))

    def outputs(pixels):
        probabilities = model(tf.cast(pixels, tf.float32), training=False)
        top = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "class_id": top,
            "label": tf.gather(labels, top),
            "score": tf.reduce_max(probabilities, axis=-1),
        }

    def serve_bytes(image_bytes):
        pixels = tf.map_fn(
            lambda b: decode_and_resize(b, (height, width), resize),
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8),
        )
        return outputs(pixels)

    def serve_pixels(pixels):
        return outputs(pixels)

    return serve_bytes, serve_pixels, (height, width)


def _check_export(
    path: Path, model: keras.Model, image_size: tuple[int, int], tolerance: float
) -> float:
    """Compare the export with the Keras model on PNG-encoded check images; return the gap."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, *image_size, 3), dtype=np.uint8)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels]
    expected = np.asarray(model.predict_on_batch(pixels.astype("float32")))
    loaded = tf.saved_model.load(str(path))
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    from_pixels = loaded.serve_pixels(tf.constant(pixels))
    gap = max(
        float(np.abs(served["probabilities"].numpy() - expected).max()),
        float(np.abs(from_pixels["probabilities"].numpy() - expected).max()),
    )
    if not gap <= tolerance:
        raise ExportCheckError(
            f"The exported model's probabilities differ from the Keras model's by {gap:.2e} "
            f"(allowed: {tolerance:.0e}); nothing was written."
        )
    return gap


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    class_names: Sequence[str],
    *,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    metadata: dict | None = None,
    resize: str = "stretch",
) -> Path:
    """Export a classifier as a SavedModel for TF Serving, with decoding inside the graph.

    Signatures:
      - `serving_default(image_bytes: string[batch])`: encoded JPEG, PNG, GIF or BMP files.
      - `serve_pixels(pixels: uint8[batch, height, width, 3])`: RGB images at model size.
    Both return `probabilities`, `class_id`, `label` (the top class name) and `score`.
    Beside the SavedModel files: `labels.txt` (one class per line) and `tfinetune.json`.

    Args:
        model: a classifier taking RGB pixels in 0..255.
        export_dir: the folder to create.
        class_names: the class names, in output order.
        overwrite: replace an earlier tfinetune export in `export_dir` (nothing else).
        tolerance: the largest allowed difference from the Keras model's probabilities.
        metadata: extra JSON-ready facts to store in `tfinetune.json`.
        resize: how `serving_default` resizes images: "stretch", "crop" or "pad", as the
            model was trained (see `tfinetune.data.images.resize_image`).

    Returns:
        The export folder.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> import tempfile
    >>> path = export_saved_model(m, tempfile.mkdtemp() + "/sm", ["a", "b"])
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['.tfinetune', 'assets', 'fingerprint.pb']
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"Unknown resize mode {resize!r}. Use one of {', '.join(RESIZE_MODES)}.")
    export_dir = Path(export_dir)
    class_names = [str(c) for c in class_names]
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model predicts {model.output_shape[-1]} classes but {len(class_names)} class "
            f"names were given: {class_names}."
        )
    with staged_folder(export_dir, "export", overwrite) as staging:
        serve_bytes, serve_pixels, size = _serving_functions(model, class_names, resize)
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serving_default",
            serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
        archive.add_endpoint(
            "serve_pixels",
            serve_pixels,
            input_signature=[tf.TensorSpec([None, *size, 3], tf.uint8, name="pixels")],
        )
        archive.write_out(str(staging), verbose=False)
        (staging / LABELS_FILE).write_text("\n".join(class_names) + "\n")
        gap = _check_export(staging, model, size, tolerance)
        facts = {
            "class_names": class_names,
            "image_size": list(size),
            "resize": resize,
            "check_max_abs_diff": gap,
            **(metadata or {}),
        }
        (staging / METADATA_FILE).write_text(json.dumps(facts, indent=2))
    return export_dir
