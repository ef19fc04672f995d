"""Which training elements were decoded, so that those that failed can be named.

The scan before training reads headers only for large inputs (or nothing, for shards), so a
file whose header is sound but whose image data is corrupt is found while training: the
pipeline drops it (one bad file never stops an epoch), and flags in a `DecodeLog` every
element it tried and every one it decoded. Once every element has been tried, those tried and
not decoded are the ones that failed, and the run names them in its manifest.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class DecodeLog:
    """Two flags per element of a source: tried (its decoding began) and decoded.

    The flags live in `tf.Variable`s (on the host), which the `tf.data` pipeline sets as it
    goes. An element tried and not decoded failed; since the pipeline runs ahead of training
    on other threads, that is only certain after a whole pass (at the end of an epoch that
    read the dataset to its end), and `failed` answers only once every element was tried.

    Args:
        count: the number of elements (indices 0 to `count - 1`).

    Example:
    >>> log = DecodeLog(3)
    >>> _ = log.attempt(tf.constant(0, tf.int64)), log.mark(tf.constant([0], tf.int64))
    >>> log.failed() is None  # elements 1 and 2 were never tried
    True
    >>> _ = log.attempt(tf.constant([1, 2], tf.int64)), log.mark(tf.constant([2], tf.int64))
    >>> log.failed().tolist()
    [1]
    """

    def __init__(self, count: int) -> None:
        self.count = int(count)
        with tf.device("/cpu:0"):
            self.tried = tf.Variable(tf.zeros([self.count], tf.bool), trainable=False)
            self.decoded = tf.Variable(tf.zeros([self.count], tf.bool), trainable=False)

    @staticmethod
    def _set(flags: tf.Variable, indices: tf.Tensor) -> tf.Operation:
        rows = tf.reshape(tf.cast(indices, tf.int64), [-1])
        return flags.scatter_update(tf.IndexedSlices(tf.ones_like(rows, tf.bool), rows))

    def attempt(self, indices: tf.Tensor) -> tf.Operation:
        """Flag `indices` (int64, a vector or a scalar) as tried: make the reading and
        decoding depend on it (`tf.control_dependencies`).

        Args:
            indices: the indices of the elements about to be decoded.
        """
        return self._set(self.tried, indices)

    def mark(self, indices: tf.Tensor) -> tf.Operation:
        """Flag `indices` (int64, a vector or a scalar) as decoded.

        Args:
            indices: the decoded elements' indices.
        """
        return self._set(self.decoded, indices)

    def passed(self, index: tf.Tensor, *values: tf.Tensor) -> tuple:
        """`values`, once the element `index` is flagged as decoded (for a `tf.data` map).

        Args:
            index: the element's index.
            *values: what the element carries on (pixels, label).
        """
        with tf.control_dependencies([self.mark(index)]):
            return tuple(tf.identity(v) for v in values)

    def failed(self) -> np.ndarray | None:
        """The indices tried and never decoded (int64, in order), or None while some element
        has not been tried yet (call it after a pass, e.g. at the end of an epoch)."""
        tried = self.tried.numpy()
        if not tried.all():
            return None
        return np.flatnonzero(tried & ~self.decoded.numpy()).astype(np.int64)
