"""The serving signatures of an exported model: encoded images, pixels, tf.Examples.

Every signature ends in the same outputs, computed by the Keras model on `uint8` pixels
that were decoded and resized exactly as in training (`tfinetune.data.images`). The outputs
follow the model's task (`tfinetune.models.task_of`): `OUTPUTS` for one label per image,
`MULTI_LABEL_OUTPUTS` for several, `REGRESSION_OUTPUTS` for a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from tfinetune.data.audio import decode_clip, fit_length
from tfinetune.data.images import decode_and_resize, resize_image
from tfinetune.data.records import FEATURES
from tfinetune.data.text import check_text_lengths
from tfinetune.models.classifier import modality_of, sample_rate_of
from tfinetune.models.heads import task_of

# Signature names and their input names. TF Serving's REST API turns {"b64": ...} into bytes;
# input names ending in `_bytes` mark binary inputs for clients that follow that convention.
BYTES_SIGNATURE, BYTES_INPUT = "serving_default", "image_bytes"
IMAGES_SIGNATURE, IMAGES_INPUT = "serve_images", "images"
EXAMPLES_SIGNATURE, EXAMPLES_INPUT = "serve_examples", "example_bytes"
IMAGE_FEATURE = "image/encoded"  # the key `tfinetune convert` writes the image bytes under
OUTPUTS = (
    "probabilities",
    "class_id",
    "label",
    "score",
    "top_k_class_ids",
    "top_k_labels",
    "top_k_scores",
)
MULTI_LABEL_OUTPUTS = (
    "probabilities",
    "predicted",
    "labels",
    "num_labels",
    "top_k_class_ids",
    "top_k_labels",
    "top_k_scores",
)
REGRESSION_OUTPUTS = ("value", "values")
# Text and audio models (see `signal_functions`).
TEXT_INPUT = "text"
AUDIO_INPUT = "audio_bytes"
WAVEFORMS_SIGNATURE, WAVEFORMS_INPUT = "serve_waveforms", "waveforms"


def serving_functions(
    model: keras.Model,
    class_names: Sequence[str],
    resize: str = "stretch",
    top_k: int = 5,
    thresholds: Sequence[float] | None = None,
) -> dict[str, tuple[Callable, tf.TensorSpec]]:
    """The three serving functions of `model`, each with its input signature.

    Outputs of each, one label per image: `probabilities` `[batch, classes]`, the top
    class's `class_id`, `label` and `score`, and the `top_k_class_ids`, `top_k_labels` and
    `top_k_scores` `[batch, k]`. Several labels: `probabilities`, `predicted` (`[batch,
    classes]`, 1 where a probability reaches its class's threshold), `labels` (`[batch,
    classes]`, the predicted classes' names first in class order, then empty strings),
    `num_labels` `[batch]` and the `top_k_*`. Regression: `value` `[batch]` (the first
    target) and `values` `[batch, targets]`, in the target's units.

    Args:
        model: a model taking RGB pixels in 0..255 at a fixed size.
        class_names: the class names, in output order (regression: the targets' names).
        resize: "stretch", "crop" or "pad", as the model was trained.
        top_k: how many classes the top-k outputs hold (at most the number of classes).
        thresholds: multi-label: each class's threshold (default 0.5 each).

    Returns:
        `{signature name: (function, input TensorSpec)}`.

    Example:
    >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
    ...                       keras.layers.Dense(3, activation="softmax")])
    >>> fns = serving_functions(m, ["a", "b", "c"], top_k=2)
    >>> serve, spec = fns["serve_images"]
    >>> serve(tf.zeros([1, 20, 30, 3], tf.uint8))["top_k_labels"].shape
    TensorShape([1, 2])
    """
    if modality_of(model) != "image":
        return signal_functions(model, class_names, top_k, thresholds)
    if FEATURES.get(IMAGE_FEATURE) is None:  # tfinetune convert must write what we parse
        raise RuntimeError(f"tfinetune.data.records no longer writes {IMAGE_FEATURE!r}.")
    height, width = model.input_shape[1:3]
    size = (height, width)
    outputs = _outputs_of(model, class_names, top_k, thresholds)

    def from_bytes(encoded: tf.Tensor) -> tf.Tensor:
        return tf.map_fn(
            lambda b: decode_and_resize(b, size, resize),
            encoded,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8),
        )

    def serve_bytes(image_bytes):
        return outputs(from_bytes(image_bytes))

    def serve_images(images):
        pixels = tf.map_fn(
            lambda image: resize_image(image, size, resize),
            images,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8),
        )
        return outputs(pixels)

    def serve_examples(example_bytes):
        parsed = tf.io.parse_example(
            example_bytes, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
        )
        return outputs(from_bytes(parsed[IMAGE_FEATURE]))

    return {
        BYTES_SIGNATURE: (serve_bytes, tf.TensorSpec([None], tf.string, name=BYTES_INPUT)),
        IMAGES_SIGNATURE: (
            serve_images,
            tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_INPUT),
        ),
        EXAMPLES_SIGNATURE: (
            serve_examples,
            tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT),
        ),
    }


def signal_functions(
    model: keras.Model,
    class_names: Sequence[str],
    top_k: int = 5,
    thresholds: Sequence[float] | None = None,
) -> dict[str, tuple[Callable, tf.TensorSpec]]:
    """The serving functions of a text or audio model, with the outputs of `serving_functions`.

    Text: `serving_default(text: string[batch])`, the raw sentences (the model's own
    preprocessing is inside it), each at most `tfinetune.data.text.max_text_bytes()` long.
    Audio: `serving_default(audio_bytes: string[batch])`, WAV files at any sample rate, mono
    or not, decoded, mixed down, resampled and fitted to the model's clip by the code
    training used (`tfinetune.data.audio.decode_clip`); and
    `serve_waveforms(waveforms: float32[batch, samples])`, mono waveforms at the model's rate.

    Args:
        model: a text or audio model made by `build_classifier`.
        class_names: the class names, in output order.
        top_k: how many classes the top-k outputs hold.
        thresholds: multi-label: each class's threshold (default 0.5 each).
    """
    outputs = _outputs_of(model, class_names, top_k, thresholds)
    if modality_of(model) == "text":

        def serve_text(text):
            return outputs(check_text_lengths(text))

        return {BYTES_SIGNATURE: (serve_text, tf.TensorSpec([None], tf.string, name=TEXT_INPUT))}
    rate, samples = sample_rate_of(model), model.input_shape[1]

    def serve_audio(audio_bytes):
        return outputs(
            tf.map_fn(
                lambda encoded: decode_clip(encoded, rate, samples),
                audio_bytes,
                fn_output_signature=tf.TensorSpec([samples], tf.float32),
            )
        )

    def serve_waveforms(waveforms):
        return outputs(
            tf.map_fn(
                lambda wave: fit_length(wave, samples),
                waveforms,
                fn_output_signature=tf.TensorSpec([samples], tf.float32),
            )
        )

    return {
        BYTES_SIGNATURE: (serve_audio, tf.TensorSpec([None], tf.string, name=AUDIO_INPUT)),
        WAVEFORMS_SIGNATURE: (
            serve_waveforms,
            tf.TensorSpec([None, None], tf.float32, name=WAVEFORMS_INPUT),
        ),
    }


def _outputs_of(
    model: keras.Model, class_names: Sequence[str], top_k: int, thresholds
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The function from `uint8` pixels to the task's serving outputs."""
    labels = tf.constant([str(c) for c in class_names])
    k = max(1, min(int(top_k), len(class_names)))
    task = task_of(model)
    cut = tf.constant(
        [0.5] * len(class_names) if thresholds is None else list(thresholds), tf.float32
    )

    def outputs(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        if inputs.dtype != tf.string:
            inputs = tf.cast(inputs, tf.float32)
        predictions = tf.cast(model(inputs, training=False), tf.float32)
        if task == "regression":
            return {"value": predictions[:, 0], "values": predictions}
        scores, ids = tf.math.top_k(predictions, k=k)
        top = {
            "top_k_class_ids": ids,
            "top_k_labels": tf.gather(labels, ids),
            "top_k_scores": scores,
        }
        if task == "multi_label":
            return {"probabilities": predictions, **_label_sets(predictions, cut, labels), **top}
        return {
            "probabilities": predictions,
            "class_id": ids[:, 0],
            "label": tf.gather(labels, ids[:, 0]),
            "score": scores[:, 0],
            **top,
        }

    return outputs


def _label_sets(probabilities: tf.Tensor, thresholds: tf.Tensor, names: tf.Tensor) -> dict:
    """Multi-label decisions: which classes reach their thresholds, and their names."""
    chosen = probabilities >= thresholds[None, :]
    # Predicted classes first, in class order: sort by (not chosen, class index).
    n = tf.shape(probabilities)[1]
    order = tf.argsort(tf.cast(~chosen, tf.int32) * n + tf.range(n)[None, :], axis=1)
    kept = tf.gather(chosen, order, batch_dims=1)
    named = tf.where(kept, tf.gather(names, order), tf.constant(""))
    return {
        "predicted": tf.cast(chosen, tf.int32),
        "labels": named,
        "num_labels": tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1),
    }


def image_example(encoded: bytes) -> bytes:
    """A serialized `tf.train.Example` holding image bytes as `serve_examples` reads them.

    Args:
        encoded: the bytes of an image file.

    Example:
    >>> len(image_example(b"abc")) > 3
    True
    """
    feature = {IMAGE_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
