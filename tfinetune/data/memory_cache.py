"""A memory cache for training data whose first pass overlaps decoding with training.

`dataset.cache().shuffle(n)` fills the whole shuffle buffer, decoding every image, before
the first batch leaves, so in epoch 1 decoding never overlaps training. Here the cheap
elements (encoded bytes) are shuffled before decoding instead; the first pass emits each
image as soon as it is decoded and stores it in a preallocated slot; every later pass reads
the slots in a new random order and never touches the source again.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
GATHER_ROWS = 64  # later passes read the slots this many at a time


def shuffled_memory_cache(
    source: tf.data.Dataset,
    count: int,
    decode: Callable,
    seed: int | None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """Decode `(index, element)` pairs into memory slots; reshuffle every pass after the first.

    The first pass decodes each element (skipping those whose decoding fails), stores it in
    slot `index` and passes it on at once, in the order it came (shuffle `source` before
    this); later passes read the stored slots in a new random order and never touch `source`.

    Args:
        source: `(index in [0, count), element)` pairs, each index at most once per pass.
        count: the number of indices.
        decode: `element -> (pixels of one fixed shape, label)`, a TensorFlow function.
        seed: seeds the order of the passes after the first.
        deterministic: keep the element order fixed for a seed.

    Example:
    >>> src = tf.data.Dataset.range(4).map(lambda i: (i, i))
    >>> ds = shuffled_memory_cache(
    ...     src, 4, lambda i: (tf.fill([2, 2, 3], tf.cast(i, tf.uint8)), i % 2), seed=1)
    >>> [int(x[0, 0, 0]) for x, _ in ds]  # the first pass, as it came
    [0, 1, 2, 3]
    >>> sorted(int(x[0, 0, 0]) for x, _ in ds)  # later passes: the same, reshuffled
    [0, 1, 2, 3]
    """
    pixels_spec, label_spec = source.map(lambda i, element: decode(element)).element_spec
    if not pixels_spec.shape.is_fully_defined():
        raise ValueError(f"The cached images need one fixed shape; got {pixels_spec.shape}.")
    pixels = tf.Variable(tf.zeros([count, *pixels_spec.shape], pixels_spec.dtype), trainable=False)
    labels = tf.Variable(tf.zeros([count, *label_spec.shape], label_spec.dtype), trainable=False)
    filled = tf.Variable(tf.zeros([count], tf.bool), trainable=False)
    complete = tf.Variable(False, trainable=False)  # a whole first pass has been stored

    # Row-wise scatters and gathers: `variable[i]` would read (copy) the whole variable.
    def decode_and_store(index, element):
        image, label = decode(element)
        rows = tf.reshape(index, [1])
        with tf.control_dependencies([image, label]):  # nothing is stored if decoding fails
            stored = [
                pixels.scatter_update(tf.IndexedSlices(image[tf.newaxis], rows)),
                labels.scatter_update(tf.IndexedSlices(label[tf.newaxis], rows)),
            ]
        with tf.control_dependencies(stored):
            marked = filled.scatter_update(tf.IndexedSlices(tf.ones([1], tf.bool), rows))
        with tf.control_dependencies([marked]):
            return tf.identity(image), tf.identity(label)

    def mark_complete(image, label):
        with tf.control_dependencies([complete.assign(True)]):
            return tf.identity(image), tf.identity(label)

    first = source.map(
        decode_and_store, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    ).ignore_errors(log_warning=True)
    # After the last stored element, one dummy element sets `complete` and is dropped.
    dummy = tf.data.Dataset.from_tensors(
        (
            tf.zeros(pixels_spec.shape, pixels_spec.dtype),
            tf.zeros(label_spec.shape, label_spec.dtype),
        )
    )
    first = first.concatenate(dummy.map(mark_complete).filter(lambda image, label: False))
    # Another seed than the first pass's shuffle, which may have used `seed` on `count` too.
    later = tf.data.Dataset.range(count).shuffle(
        count, seed=None if seed is None else seed + 104729, reshuffle_each_iteration=True
    )
    later = later.filter(lambda i: tf.gather(filled, i)).batch(GATHER_ROWS)
    later = later.map(
        lambda rows: (tf.gather(pixels, rows), tf.gather(labels, rows)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    ).unbatch()
    # Which one a pass reads is decided once, when the pass starts.
    choice = tf.data.Dataset.from_tensors(0).map(lambda _: tf.cast(complete, tf.int64))
    choice = choice.flat_map(lambda c: tf.data.Dataset.from_tensors(c).repeat())
    return tf.data.Dataset.choose_from_datasets([first, later], choice)
