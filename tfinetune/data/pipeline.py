"""The `tf.data` pipeline every source goes through: decode, resize, cache, shuffle, batch,
augment, prefetch.

Sources hand over `(encoded image bytes, label)` or `(uint8 pixels, label)` elements, or for
training `(index, (bytes, label))` elements they shuffled themselves. Decoding runs in
parallel; a file that fails to decode is dropped rather than stopping an epoch.
Decoded, resized images are cached (memory when they fit, or a disk file) so that later
epochs skip decoding. With a decode-time random resized crop the crop must change every
epoch, so then only the encoded bytes are cached. Augmentation runs on batches with one
seed per batch, which keeps seeded pipelines repeatable while maps run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import tensorflow as tf

from tfinetune.data.augment import Augment, build_augmentation, mixes_labels
from tfinetune.data.decode_log import DecodeLog
from tfinetune.data.images import (
    RESIZE_MODES,
    decode_and_resize,
    decode_random_crop,
    resize_image,
)
from tfinetune.data.memory_cache import shuffled_memory_cache
from tfinetune.sizes import to_size

AUTOTUNE = tf.data.AUTOTUNE
# Decoded images (or, with random crops, encoded bytes) are cached in memory below this.
MEMORY_CACHE_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class PipelineOptions:
    """How every source's images become batches: one set of options for every data function.

    Every function that makes datasets takes `options=` and, for convenience, any of these
    fields as keyword arguments (`image_folder_datasets(dir, image_size=160)`).

    Args:
        image_size: the model's input size, one int or `(height, width)`.
        batch_size: images per batch.
        augment: the training augmentation (see `tfinetune.data.augment.build_augmentation`).
        resize: "stretch", "crop" or "pad" (see `tfinetune.data.images.resize_image`).
        cache: True (memory, when it fits in 2 GiB), False, or a file path for a disk cache
            (one file per split, with the split's name as suffix).
        seed: seeds splits, shuffling, crops and augmentation (None: unseeded).
        deterministic: keep the element order fixed (False lets parallel work finish out of
            order, which can be faster when images differ a lot in size).

    Example:
    >>> PipelineOptions.resolve(None, image_size=160).image_size
    (160, 160)
    """

    image_size: int | tuple[int, int] = 224
    batch_size: int = 32
    augment: Augment = "light"
    resize: str = "stretch"
    cache: bool | str | os.PathLike = True
    seed: int | None = 1337
    deterministic: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", to_size(self.image_size))
        batch = self.batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"Unknown resize mode {self.resize!r}. Use one of {', '.join(RESIZE_MODES)}."
            )

    @classmethod
    def resolve(cls, options: PipelineOptions | None = None, **overrides: Any) -> PipelineOptions:
        """`options` (or the defaults) with some fields replaced; unknown names are refused.

        Args:
            options: the starting options, or None for the defaults.
            **overrides: fields to replace.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(
                f"Unknown pipeline option(s) {unknown}. The options are: {', '.join(known)}."
            )
        return replace(options or cls(), **overrides)


def build_pipeline(
    source: tf.data.Dataset,
    *,
    count: int,
    options: PipelineOptions | None = None,
    training: bool = False,
    encoded_bytes: int | None = None,
    num_classes: int | None = None,
    one_hot: bool = False,
    decode_log: DecodeLog | None = None,
    reads_files: bool | None = None,
    **overrides: Any,
) -> tf.data.Dataset:
    """Turn a source of `(image, label)` elements into batches of `(float32 pixels, labels)`.

    Args:
        source: elements `(encoded bytes, label)` (a scalar string) or `(uint8 [h, w, 3]
            or [h, w] pixels, label)`; labels are class indices or multi-hot vectors. For
            training, also `(index, (file path, label))` elements that come shuffled
            (`file_source(..., shuffled=True)`); each file is read where it is decoded.
        count: the number of elements (for the shuffle buffer and the memory estimate).
        options: the pipeline options (see `PipelineOptions`).
        training: shuffle every epoch and augment.
        encoded_bytes: the total size of the encoded images, if known (for random crops).
        num_classes: needed for one-hot labels.
        one_hot: give one-hot labels (always so when the augmentation mixes labels, as
            MixUp and CutMix do; give it to the other splits of such data too).
        decode_log: for training: marks the index of every element that decoded (an
            element's index is its position in `source`, or the index it comes with), so
            that the ones that failed can be named after a pass.
        reads_files: whether an indexed source's images are file paths (the default) or
            encoded bytes (shuffled records).
        **overrides: fields of `PipelineOptions`.

    Example:
    >>> import numpy as np
    >>> src = tf.data.Dataset.from_tensor_slices((np.zeros((6, 9, 9, 3), "uint8"), [0, 1] * 3))
    >>> ds = build_pipeline(src, count=6, image_size=4, batch_size=4, training=True, seed=1)
    >>> [tuple(x.shape) for x, _ in ds]
    [(4, 4, 4, 3), (2, 4, 4, 3)]
    """
    opts = PipelineOptions.resolve(options, **overrides)
    augmenter = build_augmentation(opts.augment, seed=opts.seed) if training else None
    crop = augmenter.random_crop if augmenter is not None else None
    one_hot = one_hot or (augmenter is not None and augmenter.mixes_labels)
    if one_hot and not num_classes:
        raise ValueError("One-hot labels (which MixUp and CutMix need) need num_classes.")
    # An indexed source, `(index, (path or bytes, label))`, comes shuffled (`file_source`).
    indexed = isinstance(source.element_spec[1], tuple)
    reads_files = indexed if reads_files is None else reads_files
    image_spec = source.element_spec[1][0] if indexed else source.element_spec[0]
    is_encoded = image_spec.dtype == tf.string
    if crop is not None and not is_encoded:
        raise ValueError(
            "A random resized crop happens while decoding, so it needs encoded images; this "
            "source gives pixels. Use a policy without a crop, such as 'light'."
        )
    height, width = opts.image_size
    # What is cached: decoded images, or with random crops the encoded bytes.
    decoded_bytes = count * height * width * 3
    cached_bytes = (encoded_bytes or MEMORY_CACHE_LIMIT + 1) if crop else decoded_bytes
    cache = _Cache(opts, cached_bytes, shuffle=count if training else 0)
    if training and not indexed and (not cache.stores or cache.replays(crop)):
        # Shuffle the cheap elements (bytes) before decoding: nothing is cached, or the
        # memory cache stores the first pass as it goes (see `memory_cache`).
        source = source.enumerate().shuffle(count, seed=opts.seed, reshuffle_each_iteration=True)
    elif training and not indexed and decode_log is not None:
        source = source.enumerate()  # shuffled after the cache, with the index
    ds = _decode(source, opts, cache, crop, is_encoded, paths=reads_files, log=decode_log)
    if one_hot:
        ds = ds.map(lambda x, y: (x, _one_hot(y, num_classes)), num_parallel_calls=AUTOTUNE)
    if augmenter is not None and augmenter.layers:
        ds = tf.data.Dataset.zip(ds, _seeds(opts.seed, 2))
        ds = ds.map(
            lambda batch, s: augmenter(batch[0], batch[1], seed=s),
            num_parallel_calls=AUTOTUNE,
            deterministic=opts.deterministic,
        )
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


@dataclass(frozen=True)
class _Cache:
    """Where decoded elements are cached, and the shuffle that follows the cache."""

    options: PipelineOptions
    cached_bytes: int
    shuffle: int  # the shuffle buffer (0: no shuffle)

    def replays(self, crop) -> bool:
        """Whether decoded training images go to a `shuffled_memory_cache`."""
        return bool(self.shuffle) and crop is None and self.in_memory

    @property
    def in_memory(self) -> bool:
        return self.options.cache is True and self.cached_bytes <= MEMORY_CACHE_LIMIT

    @property
    def stores(self) -> bool:
        return self.in_memory or isinstance(self.options.cache, (str, os.PathLike))

    def __call__(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        if not self.stores:
            return ds
        cache = self.options.cache
        ds = ds.cache() if cache is True else ds.cache(os.fspath(cache))
        if self.shuffle:
            ds = ds.shuffle(self.shuffle, seed=self.options.seed, reshuffle_each_iteration=True)
        return ds


def _decode(
    source, opts: PipelineOptions, cache: _Cache, crop, is_encoded, paths: bool,
    log: DecodeLog | None = None,
) -> tf.data.Dataset:  # fmt: skip
    """Batches of decoded images (a random crop, or the whole image resized), cached where
    it pays.

    `(index, (image, label))` sources come shuffled; with `paths`, their images are file
    paths, read in the step that decodes them. Elements whose decoding fails are dropped;
    with a `log`, the indices of each batch that decoded are flagged in it.
    """
    size, order, batch = opts.image_size, opts.deterministic, opts.batch_size
    indexed = isinstance(source.element_spec[1], tuple)

    def image_of(item):
        return tf.io.read_file(item[0]) if paths else item[0]

    def decoded(ds, decode):
        ds = ds.map(decode, num_parallel_calls=AUTOTUNE, deterministic=order)
        return ds.ignore_errors(log_warning=True)

    def batched(ds):  # the index travels with each image until its batch is flagged
        ds = ds.batch(batch)
        if not indexed:
            return ds
        keep = log.passed if log is not None else lambda i, x, y: (x, y)
        return ds.map(keep, num_parallel_calls=AUTOTUNE, deterministic=order)

    if indexed:  # (index, (image, label)), shuffled
        if cache.replays(crop):  # (read,) decode and store in one step
            return shuffled_memory_cache(
                source, cache.shuffle,
                lambda item: (_to_pixels(image_of(item), size, opts.resize, is_encoded), item[1]),
                opts.seed, batch, order, log=log,
            )  # fmt: skip
        source = source.map(
            lambda i, item: (i, image_of(item), item[1]), num_parallel_calls=AUTOTUNE,
            deterministic=order,
        )  # fmt: skip
    if crop is not None:  # the crop changes every epoch: cache the encoded bytes
        ds = tf.data.Dataset.zip(cache(source), _seeds(opts.seed, 1))

        def cropped(item, s):
            return (*item[:-2], decode_random_crop(item[-2], size, s, area=crop), item[-1])

        return batched(decoded(ds, cropped))

    def whole(*item):
        return (*item[:-2], _to_pixels(item[-2], size, opts.resize, is_encoded), item[-1])

    return batched(cache(decoded(source, whole)))


def build_splits(
    sources: Mapping[str, tuple[tf.data.Dataset, int, int | None]],
    options: PipelineOptions,
    num_classes: int,
    train_log: DecodeLog | None = None,
) -> dict[str, tf.data.Dataset]:
    """One pipeline per split: "train" is shuffled and augmented, the others are not.

    Args:
        sources: split name -> `(source dataset, count, encoded bytes or None)`, and for
            an indexed source whose images are bytes, not paths, a fourth item: False.
        options: the pipeline options; a disk cache path gets a `.<split>` suffix per split.
        num_classes: the number of classes (for one-hot labels).
        train_log: marks each training element that decoded (see `build_pipeline`).

    Example:
    >>> import numpy as np
    >>> src = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), "uint8"), [0, 1] * 2))
    >>> opts = PipelineOptions(image_size=4)
    >>> sorted(build_splits({"train": (src, 4, None), "val": (src, 4, None)}, opts, 2))
    ['train', 'val']
    """
    on_disk = isinstance(options.cache, (str, os.PathLike))
    one_hot = mixes_labels(options.augment)  # then every split is one-hot
    return {
        name: build_pipeline(
            source,
            count=count,
            options=options,
            encoded_bytes=encoded_bytes,
            training=name == "train",
            cache=f"{os.fspath(options.cache)}.{name}" if on_disk else options.cache,
            one_hot=one_hot,
            num_classes=num_classes,
            decode_log=train_log if name == "train" else None,
            reads_files=reads[0] if reads else None,
        )
        for name, (source, count, encoded_bytes, *reads) in sources.items()
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
