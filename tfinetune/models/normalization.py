"""The pixel normalisation a backbone's weights expect, as a Keras layer inside the model."""

from __future__ import annotations

import keras
from keras import ops

# Per-channel ImageNet statistics, in RGB order, on the 0..255 scale.
_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)
# Caffe-style models subtract these means from BGR pixels.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

MODES = {
    "tf": "scale 0..255 to -1..1",
    "torch": "scale to 0..1, then subtract the ImageNet mean and divide by its std (RGB)",
    "caffe": "reorder RGB to BGR and subtract the ImageNet mean (no scaling)",
    "unit": "scale 0..255 to 0..1",
    "none": "pass pixels through unchanged (the backbone rescales inside)",
}


@keras.saving.register_keras_serializable(package="tfinetune")
class PixelNormalization(keras.layers.Layer):
    """Map RGB pixels in 0..255 to the range and layout a backbone's weights were trained on.

    The modes match `keras.applications.imagenet_utils.preprocess_input`'s `mode` argument,
    plus `"unit"` (0..1) and `"none"`.

    Args:
        mode: one of `"tf"`, `"torch"`, `"caffe"`, `"unit"`, `"none"`.

    Example:
    >>> layer = PixelNormalization("tf")
    >>> float(layer(keras.ops.convert_to_tensor([[[[0.0, 127.5, 255.0]]]]))[0, 0, 0, 2])
    1.0
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"Unknown normalisation mode. Expected one of {sorted(MODES)}. "
                f"Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD, dtype=x.dtype)
            return (x - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
