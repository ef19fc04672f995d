"""Decoding and resizing of encoded images, shared by training pipelines and serving graphs.

The same functions run inside `tf.data` maps and inside exported SavedModels, so a model
sees exactly the same pixels in training, in evaluation and behind TF Serving.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path

import tensorflow as tf

# Leading bytes of the formats that `tf.io.decode_image` reads.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp"})


def sniff_format(header: bytes) -> str | None:
    """Name the image format from a file's first bytes, or None when it is not one we read.

    Args:
        header: the first 16 bytes (or more) of a file.

    Example:
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n....")
    'png'
    """
    for name, prefixes in _SIGNATURES.items():
        if header.startswith(prefixes):
            return name
    return None


def to_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalise an image size argument to `(height, width)`.

    Args:
        image_size: one int for square images, or `(height, width)`.

    Example:
    >>> to_size(160)
    (160, 160)
    """
    message = (
        "image_size must be a positive int or a (height, width) pair of them. "
        f"Received: image_size={image_size!r}"
    )
    if isinstance(image_size, Integral):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and all(isinstance(s, Integral) for s in image_size):
        size = tuple(int(s) for s in image_size)
    else:
        raise ValueError(message)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(message)
    return size  # type: ignore[return-value]


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG, PNG, GIF (first frame) or BMP bytes to a `uint8` RGB tensor `[h, w, 3]`.

    Grayscale images are repeated over three channels and an alpha channel is dropped.

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> png = tf.io.encode_png(tf.zeros([4, 5, 1], tf.uint8))
    >>> decode_image(png).shape
    TensorShape([4, 5, 3])
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Resize an RGB image to `image_size` (stretching), returning `uint8` pixels.

    Antialiased bilinear resizing keeps large photos faithful when they shrink to model size.

    Args:
        image: a `[h, w, 3]` tensor of pixels in 0..255.
        image_size: `(height, width)` of the result.

    Example:
    >>> resize_image(tf.zeros([10, 20, 3], tf.uint8), (4, 4)).shape
    TensorShape([4, 4, 3])
    """
    resized = tf.image.resize(image, image_size, method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def decode_and_resize(encoded: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Decode encoded image bytes and resize them to `image_size` as `uint8` RGB.

    Args:
        encoded: a scalar string tensor holding the file's bytes.
        image_size: `(height, width)` of the result.

    Example:
    >>> png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
    >>> decode_and_resize(png, (2, 2)).dtype
    tf.uint8
    """
    return resize_image(decode_image(encoded), image_size)


def load_image(path: str | Path, image_size: int | tuple[int, int]) -> tf.Tensor:
    """Read an image file and return it decoded and resized, as the pipelines and exports do.

    Args:
        path: the image file.
        image_size: one int, or `(height, width)`.

    Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> tf.io.write_file(p, tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8)))
    >>> load_image(p, 4).shape
    TensorShape([4, 4, 3])
    """
    return decode_and_resize(tf.io.read_file(str(path)), to_size(image_size))
