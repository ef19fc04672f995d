"""Perceptual hashes of images and the near-duplicate pairs they reveal.

A perceptual hash (pHash) keeps the signs of an image's lowest spatial frequencies: the
grey image shrunk to 32x32, its 2-D cosine transform, and the 8x8 lowest frequencies each
compared with their median give 64 bits. Resizing, re-encoding and mild colour changes flip
few of them, while two different photos differ in about half, so the Hamming distance
between hashes finds copies that are not byte-identical, cheaply enough to do in every scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

# On flower_photos_tune, 30 copies resized to 40-90 % and re-encoded (JPEG quality 60-90)
# differ from their originals by 0-2 bits; distinct photos there by 12 or more.
NEAR_DUPLICATE_BITS = 6
_CHUNK = 4096


def perceptual_hash(image: tf.Tensor) -> tf.Tensor:
    """The 64-bit perceptual hash of one decoded image, as 8 bytes (uint8).

    Args:
        image: `[height, width, channels]` pixels (any dtype, 1 to 4 channels).

    Example:
    >>> import numpy as np
    >>> img = np.tile(np.linspace(0, 255, 64, dtype="uint8")[:, None, None], (1, 64, 3))
    >>> perceptual_hash(img).shape.as_list()
    [8]
    """
    import tensorflow as tf  # here, so that the command line's help does not load it

    # Shrink first, then grey: both are averages, so the order does not change the result,
    # and the full-size image is read once (the scan hashes every file it decodes).
    image = tf.convert_to_tensor(image)[:, :, :3]
    small = tf.image.resize(image, (32, 32), method="area", antialias=True)
    small = tf.reduce_mean(tf.cast(small, tf.float32), axis=-1)
    freq = tf.signal.dct(tf.transpose(tf.signal.dct(small, norm="ortho")), norm="ortho")
    low = tf.reshape(tf.transpose(freq)[:8, :8], [64])
    # The median of the 63 frequencies after the constant one (as in pHash).
    median = tf.sort(low[1:])[31]
    bits = tf.cast(low > median, tf.uint8)
    weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.uint8)
    return tf.reduce_sum(tf.reshape(bits, [8, 8]) * weights, axis=1)


def as_uint64(hashes: np.ndarray | Sequence) -> np.ndarray:
    """Hashes of 8 bytes each (`[n, 8]` uint8) as one uint64 per image.

    Args:
        hashes: `[n, 8]` bytes, as `perceptual_hash` gives them.

    Example:
    >>> as_uint64([[0, 0, 0, 0, 0, 0, 0, 3]]).tolist()
    [3]
    """
    rows = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint8).reshape(-1, 8))
    return rows.view(">u8").reshape(-1).astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every hash in `a` and every hash in `b` (`[len(a), len(b)]`).

    Args:
        a: uint64 hashes.
        b: uint64 hashes.

    Example:
    >>> hamming(np.array([0], np.uint64), np.array([0, 7], np.uint64)).tolist()
    [[0, 3]]
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    return popcount(a[:, None] ^ b[None, :])


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.int32)


def popcount(x: np.ndarray) -> np.ndarray:
    """The set bits of each uint64 (`np.bitwise_count` where NumPy has it: 2.0 and later).

    Args:
        x: uint64 values.

    Example:
    >>> popcount(np.array([0, 7, 2**64 - 1], np.uint64)).tolist()
    [0, 3, 64]
    """
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int32)
    return _BYTE_BITS[np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8)].sum(-1)


def near_duplicate_pairs(
    a: np.ndarray, b: np.ndarray | None = None, max_bits: int = NEAR_DUPLICATE_BITS
) -> list[tuple[int, int, int]]:
    """Pairs `(i, j, bits)` whose hashes differ in at most `max_bits` bits.

    With one array, pairs within it (`i < j`); with two, each `a[i]` against each `b[j]`.
    Pairs are compared in chunks, so memory stays bounded as the arrays grow.

    Args:
        a: uint64 hashes.
        b: a second set of hashes (for example the validation images'), or None.
        max_bits: the largest distance that counts as a near-duplicate.

    Example:
    >>> near_duplicate_pairs(np.array([0, 1, 255], np.uint64))
    [(0, 1, 1)]
    """
    a = np.asarray(a, dtype=np.uint64)
    same = b is None
    b = a if same else np.asarray(b, dtype=np.uint64)
    pairs = []
    for start in range(0, len(a), _CHUNK):
        dist = hamming(a[start : start + _CHUNK], b)
        rows, cols = np.nonzero(dist <= max_bits)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if not same or i < c:
                pairs.append((i, c, int(dist[r, c])))
    return pairs
