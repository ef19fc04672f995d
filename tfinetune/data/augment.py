"""Augmentation policies from Keras 3 preprocessing layers, applied to batches in `tf.data`.

A policy is a list of Keras layers plus, optionally, a random resized crop done while
decoding (see `tfinetune.data.pipeline`). `Augmenter` runs the layers on a batch with a seed
that belongs to that batch: every random draw of every layer comes from it, statelessly, so
a seeded pipeline gives the same augmented batches on every run even with parallel maps.
Outside training the layers are the identity, and tfinetune never augments validation data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from tfinetune.compat import seeded_layers

LayerFactory = Callable[[int | None], keras.layers.Layer]
# A policy name, a list of Keras layers and layer names, or None (no augmentation).
Augment = str | Sequence[str | keras.layers.Layer] | None
_RANGE = (0, 255)

# Building blocks, by the names explicit lists may use.
LAYERS: dict[str, LayerFactory] = {
    "flip": lambda s: keras.layers.RandomFlip("horizontal", seed=s),
    "rotation": lambda s: keras.layers.RandomRotation(0.04, fill_mode="reflect", seed=s),
    "zoom": lambda s: keras.layers.RandomZoom((-0.15, 0.0), fill_mode="reflect", seed=s),
    "translation": lambda s: keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=s),
    "color_jitter": lambda s: keras.layers.RandomColorJitter(
        value_range=_RANGE,
        brightness_factor=0.2,
        contrast_factor=0.2,
        saturation_factor=(0.3, 0.7),
        seed=s,
    ),
    "randaugment": lambda s: keras.layers.RandAugment(value_range=_RANGE, seed=s),
    "augmix": lambda s: keras.layers.AugMix(value_range=_RANGE, seed=s),
    "erasing": lambda s: keras.layers.RandomErasing(factor=0.5, value_range=_RANGE, seed=s),
    "mixup": lambda s: keras.layers.MixUp(alpha=0.2, seed=s),
    "cutmix": lambda s: keras.layers.CutMix(seed=s),
}
# Layers that mix images, and so need one-hot labels (which they mix too).
MIXING = (keras.layers.MixUp, keras.layers.CutMix)


@dataclass(frozen=True)
class Policy:
    """A named augmentation recipe.

    Args:
        layers: names in `LAYERS`, applied in order to each training batch.
        random_crop: the area range of a random resized crop taken while decoding, or None.
    """

    layers: tuple[str, ...]
    random_crop: tuple[float, float] | None = None


POLICIES = {
    "none": Policy(()),
    "light": Policy(("flip", "rotation", "zoom")),
    "medium": Policy(("flip", "rotation", "translation", "color_jitter"), random_crop=(0.35, 1.0)),
    "heavy": Policy(("flip", "randaugment", "erasing"), random_crop=(0.08, 1.0)),
}


def mixes_labels(policy: Augment) -> bool:
    """Whether a policy mixes images (MixUp, CutMix), so that every split needs one-hot labels.

    Args:
        policy: as for `build_augmentation`.

    Example:
    >>> mixes_labels("heavy"), mixes_labels(["flip", "mixup"])
    (False, True)
    """
    if policy is None or isinstance(policy, str):
        return False
    return any(item in ("mixup", "cutmix") or isinstance(item, MIXING) for item in policy)


# Geometric layers whose random transforms compose into one resampling (see `_fuse`).
_GEOMETRIC = (keras.layers.RandomRotation, keras.layers.RandomZoom)


def _is_horizontal_flip(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.RandomFlip) and layer.mode == "horizontal"


def _matrix(layer: keras.layers.Layer, transformation: dict, height, width) -> tf.Tensor:
    """The `[batch, 3, 3]` output-to-input pixel transform of one geometric layer's draw."""
    if _is_horizontal_flip(layer):  # x -> (width - 1) - x, for the flipped images
        sign = 1.0 - 2.0 * tf.cast(tf.reshape(transformation["flips"], [-1, 1]), tf.float32)
        shift = (1.0 - sign) / 2.0 * (tf.cast(width, tf.float32) - 1.0)
        zeros, ones = tf.zeros_like(sign), tf.ones_like(sign)
        flat = tf.concat([sign, zeros, shift, zeros, ones, zeros, zeros, zeros], axis=1)
    elif isinstance(layer, keras.layers.RandomRotation):
        flat = transformation["rotation_matrix"]
    else:
        flat = _zoom_matrix(
            transformation["width_zoom"], transformation["height_zoom"], height, width
        )
    flat = tf.cast(flat, tf.float32)
    return tf.reshape(tf.concat([flat, tf.ones_like(flat[:, :1])], axis=1), [-1, 3, 3])


def _zoom_matrix(width_zoom, height_zoom, height, width) -> tf.Tensor:
    """The flat `[batch, 8]` transform of a zoom about the image centre (RandomZoom's draw).

    A zoom by `z` maps output pixel `x` to input pixel `z * x + (size - 1) / 2 * (1 - z)`,
    so the centre stays where it is.
    """
    zx = tf.cast(tf.reshape(width_zoom, [-1, 1]), tf.float32)
    zy = tf.cast(tf.reshape(height_zoom, [-1, 1]), tf.float32)
    x_offset = (tf.cast(width, tf.float32) - 1.0) / 2.0 * (1.0 - zx)
    y_offset = (tf.cast(height, tf.float32) - 1.0) / 2.0 * (1.0 - zy)
    zeros = tf.zeros_like(zx)
    return tf.concat([zx, zeros, x_offset, zeros, zy, y_offset, zeros, zeros], axis=1)


def _fuse(layers: Sequence[keras.layers.Layer], images: tf.Tensor) -> tf.Tensor:
    """Apply consecutive horizontal flip, rotation and zoom layers as one affine resampling.

    Each layer draws its random transform as usual; the transforms are multiplied and the
    batch is resampled once, instead of once per layer: the same augmentation, a fraction
    of the work, and one interpolation blur instead of two. (A flip moves whole pixels, so
    it resamples exactly.)
    """
    shape = tf.shape(images)
    total = tf.eye(3, batch_shape=[shape[0]])
    for layer in layers:
        transformation = layer.get_random_transformation({"images": images}, training=True)
        total = total @ _matrix(layer, transformation, shape[1], shape[2])
    first = next(layer for layer in layers if isinstance(layer, _GEOMETRIC))
    return keras.ops.image.affine_transform(
        images,
        tf.reshape(total, [-1, 9])[:, :8],
        interpolation=first.interpolation,
        fill_mode=first.fill_mode,
        fill_value=first.fill_value,
    )


def _fusable(run: Sequence[keras.layers.Layer], b: keras.layers.Layer) -> bool:
    """Whether layer `b` can join `run` in one resampling (with one interpolation and fill)."""
    layers = [*run, b]
    if not all(isinstance(x, _GEOMETRIC) or _is_horizontal_flip(x) for x in layers):
        return False
    if any(x.data_format != "channels_last" for x in layers):
        return False
    same = ("interpolation", "fill_mode", "fill_value")
    geometric = [x for x in layers if isinstance(x, _GEOMETRIC)]
    return all(getattr(x, k) == getattr(geometric[0], k) for x in geometric for k in same)


class Augmenter:
    """Keras preprocessing layers applied to `(images, labels)` batches with a per-batch seed.

    Consecutive horizontal RandomFlip, RandomRotation and RandomZoom layers (same fill and
    interpolation) are applied as one resampling with their composed transform (`fuse=False`
    applies them one by one, as a `keras.Sequential` would).

    Args:
        layers: Keras image preprocessing layers, applied in order.
        random_crop: the area range of the decode-time random resized crop, or None.
        fuse: compose consecutive flip, rotation and zoom layers into one resampling.

    Example:
    >>> aug = build_augmentation("light")
    >>> x = tf.random.stateless_uniform([2, 8, 8, 3], [1, 2], maxval=255.0)
    >>> a, _ = aug(x, tf.constant([0, 1]), seed=tf.constant([7, 7]))
    >>> b, _ = aug(x, tf.constant([0, 1]), seed=tf.constant([7, 7]))
    >>> bool(tf.reduce_all(a == b)), bool(tf.reduce_all(aug(x, None, training=False)[0] == x))
    (True, True)
    """

    def __init__(
        self,
        layers: Sequence[keras.layers.Layer],
        random_crop: tuple[float, float] | None = None,
        fuse: bool = True,
    ) -> None:
        self.layers = list(layers)
        self.random_crop = random_crop
        self.fuse = fuse

    @property
    def mixes_labels(self) -> bool:
        """Whether a layer mixes images (MixUp, CutMix), so labels must be one-hot."""
        return any(isinstance(layer, MIXING) for layer in self.layers)

    def __call__(self, images, labels, seed=None, training: bool = True):
        """Augment a batch; `seed` is a `[2]` int tensor (None: the layers' own generators)."""
        if not training or not self.layers:
            return images, labels
        data = {"images": tf.cast(images, tf.float32), "labels": labels}
        with seeded_layers(self.layers, seed) if seed is not None else contextlib.nullcontext():
            # Fusing calls Keras ops directly, which run on TensorFlow only when it is
            # Keras's backend; called as layers, Keras switches them to TensorFlow itself.
            fuse = keras.config.backend() == "tensorflow"
            for run in self._runs():
                if fuse and any(isinstance(layer, _GEOMETRIC) for layer in run) and len(run) > 1:
                    data["images"] = _fuse(run, data["images"])
                else:
                    for layer in run:
                        data = layer(data, training=True)
        return data["images"], data["labels"]

    def _runs(self) -> list[list[keras.layers.Layer]]:
        """The layers in order, consecutive fusable geometric layers grouped together."""
        runs: list[list[keras.layers.Layer]] = []
        for layer in self.layers:
            if self.fuse and runs and _fusable(runs[-1], layer):
                runs[-1].append(layer)
            else:
                runs.append([layer])
        return runs


def build_augmentation(
    policy: Augment = "light",
    seed: int | None = None,
    random_crop: tuple[float, float] | None = None,
) -> Augmenter | None:
    """Build an `Augmenter` from a policy name or an explicit list of layers or layer names.

    Policies: "none"; "light" (flip, small rotation, zoom in); "medium" (random resized crop
    of 35-100 % of the area, flip, rotation, translation, colour jitter); "heavy" (random
    resized crop of 8-100 %, flip, RandAugment, random erasing). Lists may mix Keras layers
    and the names in `LAYERS`, including "mixup" and "cutmix" (which make labels one-hot).

    Args:
        policy: a policy name, a list of layers or names, or None (no augmentation).
        seed: seeds every layer (the pipeline also seeds each batch).
        random_crop: the decode-time crop's area range; overrides the policy's.

    Example:
    >>> aug = build_augmentation(["flip", keras.layers.RandomContrast(0.2), "cutmix"], seed=1)
    >>> [type(layer).__name__ for layer in aug.layers], aug.mixes_labels
    (['RandomFlip', 'RandomContrast', 'CutMix'], True)
    """
    if policy is None:
        return None
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(
                f"Unknown augmentation policy. Expected one of {sorted(POLICIES)} or a list "
                f"of Keras layers or layer names ({', '.join(LAYERS)}). Received: "
                f"augment={policy!r}"
            )
        chosen = POLICIES[policy]
        names: Sequence[str | keras.layers.Layer] = chosen.layers
        random_crop = random_crop or chosen.random_crop
    else:
        names = list(policy)
    layers = []
    for item in names:
        if isinstance(item, keras.layers.Layer):
            layers.append(item)
        elif item in LAYERS:
            layers.append(LAYERS[item](seed))
        else:
            raise ValueError(
                f"Unknown augmentation layer {item!r}: use a Keras layer or one of "
                f"{', '.join(LAYERS)}."
            )
    if random_crop is not None:
        low, high = random_crop
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"random_crop must be an area range within (0, 1]: {random_crop}")
    if not layers and random_crop is None:
        return None
    return Augmenter(layers, random_crop)
