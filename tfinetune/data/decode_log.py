"""Which training elements were decoded, so that those that failed can be named.

The scan before training reads headers only for large inputs (or nothing, for shards), so a
file whose header is sound but whose image data is corrupt is found while training: the
pipeline drops it (one bad file never stops an epoch), and flags in a `DecodeLog` every
element it decoded. After a whole pass, the elements not flagged are the ones that failed,
and the run names them in its manifest.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class DecodeLog:
    """One flag per element of a source: set once the element has been decoded.

    The flags are a NumPy array in this process, which the `tf.data` pipeline sets a batch at
    a time (a `tf.Variable` updated from the pipeline halved the training speed of a million
    images: `benchmarks/scale.py`). The pipeline runs ahead of training on other threads, so
    read the flags after a whole pass (at the end of an epoch that read the dataset to its
    end): the elements not flagged then are the ones that failed.

    Args:
        count: the number of elements (indices 0 to `count - 1`).

    Example:
    >>> log = DecodeLog(3)
    >>> _ = log.mark(tf.constant([0, 2], tf.int64))
    >>> log.failed().tolist()
    [1]
    """

    def __init__(self, count: int) -> None:
        self.count = int(count)
        self.decoded = np.zeros(self.count, bool)

    def _set(self, rows: np.ndarray) -> np.bool_:
        self.decoded[rows] = True
        return np.bool_(True)

    def mark(self, indices: tf.Tensor) -> tf.Tensor:
        """Flag `indices` (int64, a vector or a scalar) as decoded.

        Args:
            indices: the decoded elements' indices.
        """
        rows = tf.reshape(tf.cast(indices, tf.int64), [-1])
        return tf.numpy_function(self._set, [rows], tf.bool, stateful=True)

    def passed(self, indices: tf.Tensor, *values: tf.Tensor) -> tuple:
        """`values`, once `indices` are flagged as decoded (for a `tf.data` map of batches).

        Args:
            indices: the batch's element indices.
            *values: what the batch carries on (pixels, labels).
        """
        with tf.control_dependencies([self.mark(indices)]):
            return tuple(tf.identity(v) for v in values)

    def failed(self) -> np.ndarray:
        """The indices not decoded so far (int64, in order): after a whole pass, those that
        failed."""
        return np.flatnonzero(~self.decoded).astype(np.int64)
