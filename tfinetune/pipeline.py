"""The `tf.data` pipeline every source goes through: decode, resize, cache, shuffle, batch,
augment, prefetch.

Sources hand over `(encoded image bytes, label)` or `(uint8 pixels, label)` elements. Decoding
runs in parallel; a file that fails to decode is dropped rather than stopping an epoch.
Decoded, resized images are cached (memory when they fit, or a disk file) so that later
epochs skip decoding. With a decode-time random resized crop the crop must change every
epoch, so then only the encoded bytes are cached. Augmentation runs on batches with one
seed per batch, which keeps seeded pipelines repeatable while maps run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import keras
import tensorflow as tf

from tfinetune.augment import build_augmentation, mixes_labels
from tfinetune.images import decode_and_resize, decode_random_crop, resize_image, to_size

AUTOTUNE = tf.data.AUTOTUNE
# Decoded images (or, with random crops, encoded bytes) are cached in memory below this.
MEMORY_CACHE_LIMIT = 2 * 1024**3


def build_pipeline(
    source: tf.data.Dataset,
    *,
    count: int,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    training: bool = False,
    augment: str | Sequence[str | keras.layers.Layer] | None = "light",
    resize: str = "stretch",
    cache: bool | str | os.PathLike = True,
    encoded_bytes: int | None = None,
    num_classes: int | None = None,
    one_hot: bool = False,
    seed: int | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Turn a source of `(image, label)` elements into batches of `(float32 pixels, labels)`.

    Args:
        source: elements `(encoded bytes, label)` (a scalar string) or `(uint8 [h, w, 3]
            or [h, w] pixels, label)`; labels are class indices or multi-hot vectors.
        count: the number of elements (for the shuffle buffer and the memory estimate).
        image_size: the model's input size.
        batch_size: images per batch.
        training: shuffle every epoch and augment.
        augment: the training augmentation (see `tfinetune.augment.build_augmentation`).
        resize: "stretch", "crop" or "pad" (see `tfinetune.images.resize_image`).
        cache: True (memory, when it fits in 2 GiB), False, or a file path for a disk cache.
        encoded_bytes: the total size of the encoded images, if known (for random crops).
        num_classes: needed for one-hot labels.
        one_hot: give one-hot labels (always so when the augmentation mixes labels, as
            MixUp and CutMix do; give it to the other splits of such data too).
        seed: seeds shuffling, crops and augmentation.
        deterministic: keep the element order fixed (False lets parallel work finish out of
            order, which can be faster when images differ a lot in size).

    Example:
    >>> import numpy as np
    >>> src = tf.data.Dataset.from_tensor_slices((np.zeros((6, 9, 9, 3), "uint8"), [0, 1] * 3))
    >>> ds = build_pipeline(src, count=6, image_size=4, batch_size=4, training=True, seed=1)
    >>> [tuple(x.shape) for x, _ in ds]
    [(4, 4, 4, 3), (2, 4, 4, 3)]
    """
    size = to_size(image_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: {batch_size!r}")
    augmenter = build_augmentation(augment, seed=seed) if training else None
    crop = augmenter.random_crop if augmenter is not None else None
    one_hot = one_hot or (augmenter is not None and augmenter.mixes_labels)
    if one_hot and not num_classes:
        raise ValueError("One-hot labels (which MixUp and CutMix need) need num_classes.")
    is_encoded = source.element_spec[0].dtype == tf.string
    if crop is not None and not is_encoded:
        raise ValueError(
            "A random resized crop happens while decoding, so it needs encoded images; this "
            "source gives pixels. Use a policy without a crop, such as 'light'."
        )
    decoded_bytes = count * size[0] * size[1] * 3
    # What is cached: decoded images, or with random crops the encoded bytes.
    cached_bytes = (encoded_bytes or MEMORY_CACHE_LIMIT + 1) if crop else decoded_bytes
    in_memory = cache is True and cached_bytes <= MEMORY_CACHE_LIMIT
    on_disk = isinstance(cache, (str, os.PathLike))

    def cache_then_shuffle(ds):
        if in_memory:
            ds = ds.cache()
        elif on_disk:
            ds = ds.cache(str(cache))
        if training and (in_memory or on_disk):
            ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        return ds

    ds = source
    if training and not (in_memory or on_disk):
        # Nothing is cached: shuffle the cheap elements (paths, bytes) before decoding.
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if crop is not None:
        ds = tf.data.Dataset.zip(cache_then_shuffle(ds), _seeds(seed, 1))
        ds = ds.map(
            lambda item, s: (decode_random_crop(item[0], size, s, area=crop), item[1]),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        ).ignore_errors(log_warning=True)
    else:
        ds = ds.map(
            lambda image, label: (_to_pixels(image, size, resize, is_encoded), label),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        ).ignore_errors(log_warning=True)
        ds = cache_then_shuffle(ds)
    ds = ds.batch(batch_size)
    if one_hot:
        ds = ds.map(lambda x, y: (x, _one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
    if augmenter is not None and augmenter.layers:
        ds = tf.data.Dataset.zip(ds, _seeds(seed, 2))
        ds = ds.map(
            lambda batch, s: augmenter(batch[0], batch[1], seed=s),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def build_splits(
    sources: Mapping[str, tuple[tf.data.Dataset, int, int | None]],
    *,
    cache: bool | str | os.PathLike = True,
    **options,
) -> dict[str, tf.data.Dataset]:
    """One pipeline per split: "train" is shuffled and augmented, the others are not.

    Args:
        sources: split name -> `(source dataset, count, encoded bytes or None)`.
        cache: as in `build_pipeline`; a disk path gets a `.<split>` suffix per split.
        **options: the other arguments of `build_pipeline`.

    Example:
    >>> import numpy as np
    >>> src = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), "uint8"), [0, 1] * 2))
    >>> sorted(build_splits({"train": (src, 4, None), "val": (src, 4, None)}, image_size=4))
    ['train', 'val']
    """
    on_disk = isinstance(cache, (str, os.PathLike))
    one_hot = mixes_labels(options.get("augment", "light"))  # then every split is one-hot
    return {
        name: build_pipeline(
            source,
            count=count,
            encoded_bytes=encoded_bytes,
            training=name == "train",
            cache=f"{os.fspath(cache)}.{name}" if on_disk else cache,
            one_hot=one_hot,
            **options,
        )
        for name, (source, count, encoded_bytes) in sources.items()
    }


def _to_pixels(image, size, resize, is_encoded):
    if is_encoded:
        return decode_and_resize(image, size, resize)
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    elif image.shape[-1] == 4:
        image = image[..., :3]
    return resize_image(tf.cast(image, tf.uint8), size, resize)


def _one_hot(labels, num_classes):
    if labels.shape.rank == 2:  # already multi-hot or one-hot
        return tf.cast(labels, tf.float32)
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes)


def _seeds(seed: int | None, stream: int) -> tf.data.Dataset:
    """An endless stream of `[2]` seeds, new every epoch, fixed by `seed`."""
    base = tf.data.Dataset.random(
        seed=None if seed is None else seed * 7919 + stream, rerandomize_each_iteration=True
    )
    return base.batch(2)
