"""Mirror averaging inside the model: each image and its mirror, their features averaged.

At inference (`predict`, `evaluate`, every export and serving signature) `MirrorViews` sends
each image through the backbone twice, as it is and mirrored left to right, and
`MirrorMean` averages the two feature maps (the mirror's flipped back, so that they line up)
before the head. With average pooling and no hidden layer, that is the average of the two
views' logits: the top class is the one both views support most, and a temperature fitted
afterwards scales the averaged logits exactly as it scales a single view's. In training both
layers pass their input through unchanged, so the mirror costs nothing there.
"""

from __future__ import annotations

import keras

VIEWS_LAYER = "mirror_views"
MEAN_LAYER = "mirror_mean"


@keras.saving.register_keras_serializable(package="tfinetune")
class MirrorViews(keras.layers.Layer):
    """At inference, `[batch, h, w, c]` images -> `[2 * batch, ...]`: the images, then their
    mirrors; in training, the images unchanged.

    Example:
    >>> x = keras.ops.reshape(keras.ops.arange(4.0), (1, 1, 4, 1))
    >>> keras.ops.convert_to_numpy(MirrorViews()(x))[:, 0, :, 0].tolist()
    [[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0]]
    """

    def call(self, inputs, training=None):
        if training:
            return inputs
        return keras.ops.concatenate([inputs, keras.ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else 2 * input_shape[0]
        return (batch, *input_shape[1:])


@keras.saving.register_keras_serializable(package="tfinetune")
class MirrorMean(keras.layers.Layer):
    """At inference, the mean of the two halves made by `MirrorViews` (a feature map's
    second half flipped back first); in training, the features unchanged.

    Example:
    >>> x = keras.ops.reshape(keras.ops.arange(4.0), (1, 1, 4, 1))
    >>> both = MirrorViews()(x) * keras.ops.reshape([1.0, 3.0], (2, 1, 1, 1))
    >>> keras.ops.convert_to_numpy(MirrorMean()(both))[0, 0, :, 0].tolist()
    [0.0, 2.0, 4.0, 6.0]
    """

    def call(self, inputs, training=None):
        if training:
            return inputs
        views, mirrors = keras.ops.split(inputs, 2, axis=0)
        if len(inputs.shape) == 4:  # a feature map: line the mirror's columns up again
            mirrors = keras.ops.flip(mirrors, axis=2)
        return (views + mirrors) / 2

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // 2
        return (batch, *input_shape[1:])


def mirrors(model: keras.Model) -> bool:
    """Whether `model` averages each image with its mirror itself (built with `mirror=True`).

    Args:
        model: a Keras model.

    Example:
    >>> x = keras.Input((4, 4, 3))
    >>> mirrors(keras.Model(x, MirrorMean(name=MEAN_LAYER)(MirrorViews(name=VIEWS_LAYER)(x))))
    True
    """
    return any(isinstance(layer, MirrorMean) for layer in model.layers)
