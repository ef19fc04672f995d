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
    a time as the batch's labels pass through a NumPy function declared stateless. Declared
    stateful (or as a `tf.Variable` scatter), the step would make the whole pipeline serial
    under op determinism, which training turns on on a CPU: TensorFlow then runs every map
    serially and prefetches nothing once any function has a stateful op (see
    `tf.config.experimental.enable_op_determinism`), and training ran at 0.7x
    (`benchmarks/decode_log.py`). Setting flags is safe to declare stateless: the data flows
    through it, so it runs once per batch, and the order it runs in does not matter. The
    pipeline runs ahead of training on other threads, so read the flags after a whole pass
    (at the end of an epoch that read the dataset to its end): the elements not flagged then
    are the ones that failed.

    Args:
        count: the number of elements (indices 0 to `count - 1`).

    Example:
    >>> log = DecodeLog(3)
    >>> _ = log.passed(tf.constant([0, 2], tf.int64), tf.constant([7, 9]))
    >>> log.failed().tolist()
    [1]
    """

    def __init__(self, count: int) -> None:
        self.count = int(count)
        self.decoded = np.zeros(self.count, bool)

    def _flag(self, rows: np.ndarray, value: np.ndarray) -> np.ndarray:
        self.decoded[rows] = True
        return value

    def passed(self, indices: tf.Tensor, *values: tf.Tensor) -> tuple:
        """`values`, the last of them passed through the step that flags `indices` as
        decoded (for a `tf.data` map of batches).

        Args:
            indices: the batch's element indices (int64, a vector or a scalar).
            *values: what the batch carries on (pixels, labels); at least one.
        """
        rows = tf.reshape(tf.cast(indices, tf.int64), [-1])
        *kept, last = values
        # Declared stateless, so that the pipeline stays free of stateful steps; the data
        # dependency (`last` flows through it) is what keeps it from being pruned.
        flagged = tf.numpy_function(self._flag, [rows, last], last.dtype, stateful=False)
        return (*kept, tf.ensure_shape(flagged, last.shape))

    def failed(self) -> np.ndarray:
        """The indices not decoded so far (int64, in order): after a whole pass, those that
        failed."""
        return np.flatnonzero(~self.decoded).astype(np.int64)
