"""Image dimensions read from file headers, so a decompression bomb is refused before decoding.

A PNG of a few megabytes can hold a 23000 x 23000 image (1.6 GB decoded). Every decode in
tfinetune (training pipelines, file checks and the exported serving graphs) first reads the
width and height from the header and refuses an image of more than `max_pixels()` pixels:
100 million by default, or `$TFINETUNE_MAX_PIXELS` (read when a pipeline or export is built).
"""

from __future__ import annotations

import tensorflow as tf

from tfinetune.data.limits import env_limit

MAX_PIXELS_ENV = "TFINETUNE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000


def max_pixels() -> int:
    """The largest image, in pixels, that tfinetune decodes.

    Example:
    >>> max_pixels() >= 1
    True
    """
    return int(env_limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, "a whole number of pixels"))


def _number(encoded: tf.Tensor, offset: int, length: int, big_endian: bool) -> tf.Tensor:
    raw = tf.io.decode_raw(tf.strings.substr(encoded, offset, length), tf.uint8)
    raw = tf.cast(tf.ensure_shape(raw, [length]), tf.int64)
    weights = [256 ** (length - 1 - i) if big_endian else 256**i for i in range(length)]
    return tf.reduce_sum(raw * tf.constant(weights, tf.int64))


def _starts_with(encoded: tf.Tensor, prefix: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(encoded, 0, len(prefix)), prefix)


def image_dimensions(encoded: tf.Tensor) -> tf.Tensor:
    """`[height, width]` (int64) from the header of a JPEG, PNG, GIF or BMP file.

    Formats it does not know give `[0, 0]` (the decoder then refuses them).

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> png = tf.io.encode_png(tf.zeros([3, 5, 1], tf.uint8))
    >>> image_dimensions(png).numpy().tolist()
    [3, 5]
    """

    def jpeg():
        return tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)

    def png():
        return tf.stack([_number(encoded, 20, 4, True), _number(encoded, 16, 4, True)])

    def gif():
        return tf.stack([_number(encoded, 8, 2, False), _number(encoded, 6, 2, False)])

    def bmp():
        height = _number(encoded, 22, 4, False)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # top-down BMPs: negative
        return tf.stack([height, _number(encoded, 18, 4, False)])

    return tf.case(
        [
            (_starts_with(encoded, b"\xff\xd8\xff"), jpeg),
            (_starts_with(encoded, b"\x89PNG\r\n\x1a\n"), png),
            (_starts_with(encoded, b"GIF8"), gif),
            (_starts_with(encoded, b"BM"), bmp),
        ],
        default=lambda: tf.zeros([2], tf.int64),
    )


def guard_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """`encoded`, once its header shows at most `max_pixels()` pixels; an error otherwise.

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> png = tf.io.encode_png(tf.zeros([3, 5, 1], tf.uint8))
    >>> guard_pixels(png).dtype
    tf.string
    """
    with tf.control_dependencies([check_dimensions(image_dimensions(encoded))]):
        return tf.identity(encoded)


def check_dimensions(dims: tf.Tensor) -> tf.Operation:
    """An assertion that `[height, width]` holds at most `max_pixels()` pixels.

    Args:
        dims: `[height, width]` (int64), as `image_dimensions` gives.

    Example:
    >>> check = check_dimensions(tf.constant([3, 5], tf.int64))  # passes
    """
    limit = max_pixels()
    return tf.debugging.assert_less_equal(
        dims[0] * dims[1],
        tf.constant(limit, tf.int64),
        message=(
            f"image too large: more than {limit:,} pixels (a decompression bomb?); raise "
            f"${MAX_PIXELS_ENV} to allow it"
        ),
    )


def check_header(encoded: tf.Tensor) -> tf.Tensor:
    """`[height, width]` from a known image header within `max_pixels()`; an error otherwise.

    What a header scan checks of each file (`tfinetune.data.files.check_files`): a format
    TensorFlow decodes, sane dimensions, no decompression bomb; not the image data.

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> check_header(tf.io.encode_png(tf.zeros([3, 5, 1], tf.uint8))).numpy().tolist()
    [3, 5]
    >>> check_header(tf.constant(b"<html>"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    tensorflow.python.framework.errors_impl.InvalidArgumentError: ...not a JPEG, PNG, GIF, BMP...
    """
    dims = image_dimensions(encoded)
    padded = tf.strings.join([encoded, b"\0" * 12])  # substr refuses to start past the end
    webp = tf.logical_and(  # decodable; its header is not read here
        _starts_with(encoded, b"RIFF"), tf.equal(tf.strings.substr(padded, 8, 4), b"WEBP")
    )
    known = tf.debugging.Assert(
        tf.logical_or(tf.reduce_all(dims > 0), webp),
        ["not a JPEG, PNG, GIF, BMP or WebP image, or its header gives no size"],
    )
    with tf.control_dependencies([known, check_dimensions(dims)]):
        return tf.identity(dims)
