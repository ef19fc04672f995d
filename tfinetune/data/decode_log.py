"""Which training elements were decoded, so that those that failed can be named.

The scan before training reads headers only for large inputs (or nothing, for shards), so a
file whose header is sound but whose image data is corrupt is found while training: the
pipeline drops it (one bad file never stops an epoch) and marks every element it did decode
in a `DecodeLog`. After a whole pass over the data, the elements never marked are the ones
that failed, and the run names them in its manifest.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class DecodeLog:
    """One flag per element of a source: set once the element has been decoded.

    The flags live in a `tf.Variable` (on the host), which the `tf.data` pipeline sets as it
    goes; a pipeline may run on other threads, so read the flags after a whole pass.

    Args:
        count: the number of elements (indices 0 to `count - 1`).

    Example:
    >>> log = DecodeLog(3)
    >>> _ = log.mark(tf.constant([0, 2], tf.int64))
    >>> log.missing().tolist()
    [1]
    """

    def __init__(self, count: int) -> None:
        self.count = int(count)
        with tf.device("/cpu:0"):
            self.decoded = tf.Variable(tf.zeros([self.count], tf.bool), trainable=False)

    def mark(self, indices: tf.Tensor) -> tf.Operation:
        """Set the flags of `indices` (int64, a vector or a scalar).

        Args:
            indices: the decoded elements' indices.
        """
        rows = tf.reshape(tf.cast(indices, tf.int64), [-1])
        return self.decoded.scatter_update(tf.IndexedSlices(tf.ones_like(rows, tf.bool), rows))

    def passed(self, index: tf.Tensor, *values: tf.Tensor) -> tuple:
        """`values`, once the element `index` is marked as decoded (for a `tf.data` map).

        Args:
            index: the element's index.
            *values: what the element carries on (pixels, label).
        """
        with tf.control_dependencies([self.mark(index)]):
            return tuple(tf.identity(v) for v in values)

    def missing(self) -> np.ndarray:
        """The indices never decoded so far, in order (int64)."""
        return np.flatnonzero(~self.decoded.numpy()).astype(np.int64)
