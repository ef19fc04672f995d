"""Decoding and resizing of encoded images, shared by training pipelines and serving graphs.

The same functions run inside `tf.data` maps and inside exported SavedModels, so a model
sees exactly the same pixels in training, in evaluation and behind TF Serving.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from tfinetune.data.headers import guard_pixels
from tfinetune.sizes import to_size

# Leading bytes of the formats that `tf.io.decode_image` reads (WebP: where TensorFlow
# was built with it), and of TIFF, which it does not read but which is reported by name.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "gif": (b"GIF87a", b"GIF89a"),
    "bmp": (b"BM",),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
# Files that operating systems and archivers leave in folders: ignored, and counted.
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "__macosx"})


def is_junk(name: str) -> bool:
    """Whether a file or folder name is known junk (hidden, `Thumbs.db`, `__MACOSX`, ...).

    Args:
        name: the file or folder name.

    Example:
    >>> [is_junk(n) for n in (".DS_Store", "Thumbs.db", "cat.jpg")]
    [True, True, False]
    """
    return name.startswith(".") or name.lower() in JUNK_NAMES


def sniff_format(header: bytes) -> str | None:
    """Name the image format from a file's first bytes, or None when it is not one we know.

    Args:
        header: the first 16 bytes (or more) of a file.

    Example:
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n....")
    'png'
    """
    if header[:4] == b"RIFF" and header[8:12] == b"WEBP":
        return "webp"
    for name, prefixes in _SIGNATURES.items():
        if header.startswith(prefixes):
            return name
    return None


def undecodable_reason(header: bytes) -> str | None:
    """Why a file of a known image format failed to decode, when the format says it all.

    Args:
        header: the file's first bytes.

    Example:
    >>> undecodable_reason(b"II*\\x00....")[:24]
    'a TIFF image: TensorFlow'
    """
    found = sniff_format(header)
    if found == "tiff":
        return (
            "a TIFF image: TensorFlow does not decode TIFF; convert it to PNG or JPEG "
            "(for example with Pillow: Image.open(path).save(new_path))"
        )
    if found == "webp":
        return (
            f"a WebP image that TensorFlow {tf.__version__} cannot decode: upgrade TensorFlow "
            "or convert it to PNG or JPEG"
        )
    return None


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Decode JPEG, PNG, GIF (first frame), BMP or WebP bytes to `uint8` RGB `[h, w, 3]`.

    Grayscale images are repeated over three channels and an alpha channel is dropped. An
    image of more pixels than `tfinetune.data.headers.max_pixels()` is refused.

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> png = tf.io.encode_png(tf.zeros([4, 5, 1], tf.uint8))
    >>> decode_image(png).shape
    TensorShape([4, 5, 3])
    """
    image = tf.io.decode_image(guard_pixels(encoded), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


RESIZE_MODES = ("stretch", "crop", "pad")


def resize_image(image: tf.Tensor, image_size: tuple[int, int], mode: str = "stretch") -> tf.Tensor:
    """Resize an RGB image to `image_size`, returning `uint8` pixels.

    Modes: "stretch" (change the aspect ratio), "crop" (cut the centre to the target's
    aspect ratio, then resize) or "pad" (resize to fit inside, then pad with black).
    Shrinking averages over areas (anti-aliased, so large photos stay faithful); enlarging
    is bilinear; shrinking one side while enlarging the other is anti-aliased bilinear.

    Args:
        image: a `[h, w, 3]` tensor of pixels in 0..255.
        image_size: `(height, width)` of the result.
        mode: one of `RESIZE_MODES`.

    Example:
    >>> [resize_image(tf.zeros([10, 20, 3], tf.uint8), (4, 4), m).shape[:2] for m in RESIZE_MODES]
    [TensorShape([4, 4]), TensorShape([4, 4]), TensorShape([4, 4])]
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"Unknown resize mode {mode!r}. Use one of {', '.join(RESIZE_MODES)}.")
    height, width = image_size
    if mode == "crop":
        shape = tf.shape(image)
        h, w = shape[0], shape[1]
        # The largest centred box with the target aspect ratio.
        crop_h = tf.minimum(h, tf.cast(tf.round(tf.cast(w, tf.float32) * height / width), tf.int32))
        crop_w = tf.minimum(w, tf.cast(tf.round(tf.cast(h, tf.float32) * width / height), tf.int32))
        crop_h, crop_w = tf.maximum(crop_h, 1), tf.maximum(crop_w, 1)
        image = tf.image.crop_to_bounding_box(
            image, (h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w
        )
    keep_aspect = mode == "pad"
    shape = tf.shape(image)
    shrinking = tf.logical_and(shape[0] >= height, shape[1] >= width)
    enlarging = tf.logical_and(shape[0] <= height, shape[1] <= width)
    # Shrinking: area averaging, a proper anti-aliasing filter and about twice as fast as
    # anti-aliased bilinear. Enlarging: bilinear (anti-aliasing changes nothing there, and
    # costs about twice the time). Mixed: anti-aliased bilinear.
    resized = tf.case(
        [
            (
                shrinking,
                lambda: tf.image.resize(
                    image, image_size, "area", preserve_aspect_ratio=keep_aspect
                ),
            ),
            (
                enlarging,
                lambda: tf.image.resize(
                    image, image_size, "bilinear", preserve_aspect_ratio=keep_aspect
                ),
            ),
        ],
        default=lambda: tf.image.resize(
            image, image_size, "bilinear", antialias=True, preserve_aspect_ratio=keep_aspect
        ),
        exclusive=False,
    )
    pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    if mode == "pad":
        shape = tf.shape(pixels)
        pixels = tf.image.pad_to_bounding_box(
            pixels, (height - shape[0]) // 2, (width - shape[1]) // 2, height, width
        )
    return tf.ensure_shape(pixels, [height, width, 3])


def decode_and_resize(
    encoded: tf.Tensor, image_size: tuple[int, int], mode: str = "stretch"
) -> tf.Tensor:
    """Decode encoded image bytes and resize them to `image_size` as `uint8` RGB.

    The one decode of the project: every pipeline, `predict`, `evaluate`, `verify` and every
    serving signature call it (`serve_images` calls `resize_image` on pixels the client
    decoded), so the same photo becomes the same pixels on every route. A JPEG is decoded at
    full size, never at libjpeg's reduced DCT scales: a server that receives pixels could not
    reproduce those (`benchmarks/decode.py` measures what that costs on large photos).

    Args:
        encoded: a scalar string tensor holding the file's bytes.
        image_size: `(height, width)` of the result.
        mode: how to resize (see `resize_image`).

    Example:
    >>> png = tf.io.encode_png(tf.zeros([8, 8, 3], tf.uint8))
    >>> decode_and_resize(png, (2, 2)).dtype
    tf.uint8
    """
    return resize_image(decode_image(encoded), image_size, mode)


def is_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """Whether encoded bytes start with the JPEG signature (a boolean tensor).

    Args:
        encoded: a scalar string tensor.

    Example:
    >>> bool(is_jpeg(tf.io.encode_jpeg(tf.zeros([2, 2, 3], tf.uint8))))
    True
    """
    return tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")


def decode_random_crop(
    encoded: tf.Tensor,
    image_size: tuple[int, int],
    seed: tf.Tensor,
    area: tuple[float, float] = (0.08, 1.0),
    aspect: tuple[float, float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """Decode a random crop of an image and resize it (the "random resized crop").

    The crop covers a random share `area` of the image with a random aspect ratio in
    `aspect`. For JPEGs only the crop is decoded (`tf.image.decode_and_crop_jpeg`, the fused
    path); other formats are decoded whole and then cropped.

    Args:
        encoded: a scalar string tensor holding the file's bytes.
        image_size: `(height, width)` of the result.
        seed: a `[2]` integer tensor: the same seed gives the same crop.
        area: the range of the crop's share of the image's area.
        aspect: the range of the crop's aspect ratio (width / height).

    Example:
    >>> jpeg = tf.io.encode_jpeg(tf.zeros([40, 60, 3], tf.uint8))
    >>> decode_random_crop(jpeg, (8, 8), tf.constant([1, 2])).shape
    TensorShape([8, 8, 3])
    """

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=aspect,
            area_range=area,
            max_attempts=10,
        )
        return begin, size

    def jpeg():
        begin, size = window(tf.image.extract_jpeg_shape(encoded))
        crop = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.image.decode_and_crop_jpeg(encoded, crop, channels=3)

    def other():
        image = decode_image(encoded)
        begin, size = window(tf.shape(image))
        return tf.slice(image, begin, size)

    encoded = guard_pixels(encoded)
    image = tf.cond(is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, 3])
    return resize_image(image, image_size)


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
