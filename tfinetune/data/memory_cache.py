"""A memory cache for training data whose first pass overlaps decoding with training.

`dataset.cache().shuffle(n)` fills the whole shuffle buffer, decoding every image, before
the first batch leaves, so in epoch 1 decoding never overlaps training. Here the cheap
elements (file paths or encoded bytes) are shuffled before decoding instead; the first pass
passes the images on as they are decoded, storing them a batch at a time in
preallocated slots; every later pass reads the slots in a new random order and never
touches the source again. Both passes make whole batches, so nothing is unbatched.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfinetune.data.decode_log import DecodeLog

AUTOTUNE = tf.data.AUTOTUNE


def shuffled_memory_cache(
    source: tf.data.Dataset,
    count: int,
    decode: Callable,
    seed: int | None,
    batch_size: int,
    deterministic: bool = True,
    log: DecodeLog | None = None,
) -> tf.data.Dataset:
    """Decode `(index, element)` pairs into memory slots, in batches; reshuffle every later pass.

    The first pass decodes each element (skipping those whose decoding fails) and passes the
    images on in batches, in the order they came (shuffle `source` before this), storing
    each batch in the slots its indices name; later passes read the stored slots, a batch
    at a time, in a new random order and never touch `source`.

    Args:
        source: `(index in [0, count), element)` pairs, each index at most once per pass.
        count: the number of indices.
        decode: `element -> (pixels of one fixed shape, label)`, a TensorFlow function.
        seed: seeds the order of the passes after the first.
        batch_size: images per batch (the last batch of a pass may be smaller).
        deterministic: keep the element order fixed for a seed.
        log: flags each index decoded in the first pass, a batch at a time (`DecodeLog`).

    Example:
    >>> src = tf.data.Dataset.range(4).map(lambda i: (i, i))
    >>> ds = shuffled_memory_cache(
    ...     src, 4, lambda i: (tf.fill([2, 2, 3], tf.cast(i, tf.uint8)), i % 2), 1, 3)
    >>> [x[:, 0, 0, 0].numpy().tolist() for x, _ in ds]  # the first pass, as it came
    [[0, 1, 2], [3]]
    >>> sorted(int(i) for x, _ in ds for i in x[:, 0, 0, 0])  # later: the same, reshuffled
    [0, 1, 2, 3]
    """
    pixels_spec, label_spec = source.map(lambda i, element: decode(element)).element_spec
    if not pixels_spec.shape.is_fully_defined():
        raise ValueError(f"The cached images need one fixed shape; got {pixels_spec.shape}.")
    pixels = tf.Variable(tf.zeros([count, *pixels_spec.shape], pixels_spec.dtype), trainable=False)
    labels = tf.Variable(tf.zeros([count, *label_spec.shape], label_spec.dtype), trainable=False)
    filled = tf.Variable(tf.zeros([count], tf.bool), trainable=False)
    complete = tf.Variable(False, trainable=False)  # a whole first pass has been stored

    # One scatter per variable and batch, after the failed decodes have been dropped.
    # Row-wise scatters and gathers: `variable[i]` would read (copy) the whole variable.
    def store(rows, images, batch_labels):
        stored = [
            pixels.scatter_update(tf.IndexedSlices(images, rows)),
            labels.scatter_update(tf.IndexedSlices(batch_labels, rows)),
        ]
        with tf.control_dependencies(stored):
            marked = filled.scatter_update(tf.IndexedSlices(tf.ones_like(rows, tf.bool), rows))
        with tf.control_dependencies([marked]):
            images, batch_labels = tf.identity(images), tf.identity(batch_labels)
        return log.passed(rows, images, batch_labels) if log is not None else (images, batch_labels)

    def mark_complete(images, batch_labels):
        with tf.control_dependencies([complete.assign(True)]):
            return tf.identity(images), tf.identity(batch_labels)

    first = source.map(
        lambda index, element: (index, *decode(element)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    ).ignore_errors(log_warning=True)
    first = first.batch(batch_size).map(
        store, num_parallel_calls=AUTOTUNE, deterministic=deterministic
    )
    # After the last stored batch, an empty one sets `complete` and is dropped.
    empty = tf.data.Dataset.from_tensors(
        (
            tf.zeros([0, *pixels_spec.shape], pixels_spec.dtype),
            tf.zeros([0, *label_spec.shape], label_spec.dtype),
        )
    )
    first = first.concatenate(empty.map(mark_complete).filter(lambda images, labels: False))
    # Another seed than the first pass's shuffle, which may have used `seed` on `count` too.
    later = tf.data.Dataset.range(count).shuffle(
        count, seed=None if seed is None else seed + 104729, reshuffle_each_iteration=True
    )
    later = later.filter(lambda i: tf.gather(filled, i)).batch(batch_size)
    later = later.map(
        lambda rows: (tf.gather(pixels, rows), tf.gather(labels, rows)),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    # Which one a pass reads is decided once, when the pass starts.
    choice = tf.data.Dataset.from_tensors(0).map(lambda _: tf.cast(complete, tf.int64))
    choice = choice.flat_map(lambda c: tf.data.Dataset.from_tensors(c).repeat())
    return tf.data.Dataset.choose_from_datasets([first, later], choice)
