import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfinetune.data.images import decode_and_resize, decode_image, sniff_format
from tfinetune.sizes import to_size


def _encode(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt, mode, name",
    [
        ("JPEG", None, "jpeg"),
        ("PNG", None, "png"),
        ("PNG", "L", "png"),
        ("PNG", "RGBA", "png"),
        ("GIF", "P", "gif"),
        ("BMP", None, "bmp"),
    ],
)
def test_every_format_decodes_to_rgb(fmt, mode, name):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    data = _encode(pixels, fmt, mode)
    assert sniff_format(data[:16]) == name
    image = decode_image(tf.constant(data))
    assert image.shape == (12, 17, 3) and image.dtype == tf.uint8
    if fmt in ("PNG", "BMP") and mode is None:
        np.testing.assert_array_equal(image.numpy(), pixels)
    if mode == "L":  # grayscale is repeated over the channels
        np.testing.assert_array_equal(image.numpy()[..., 0], image.numpy()[..., 2])


def test_resize_keeps_uint8_and_size():
    image = tf.constant(np.full((40, 30, 3), 200, np.uint8))
    out = decode_and_resize(tf.io.encode_png(image), (8, 6))
    assert out.shape == (8, 6, 3) and out.dtype == tf.uint8
    assert int(tf.reduce_min(out)) == 200 and int(tf.reduce_max(out)) == 200


@pytest.mark.parametrize("shape", [(12, 17, 3), (40, 9, 3), (60, 50, 3)])
def test_each_resize_path_matches_the_anti_aliased_filter_it_stands_for(shape):
    # Enlarging uses plain bilinear (faster), which must equal anti-aliased bilinear there;
    # shrinking averages areas; one side shrinking, the other growing: anti-aliased bilinear.
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = decode_and_resize(tf.io.encode_png(pixels), (24, 24)).numpy().astype(int)
    enlarging, shrinking = shape[0] <= 24 and shape[1] <= 24, shape[0] >= 24 and shape[1] >= 24
    method = "area" if shrinking else "bilinear"
    reference = tf.image.resize(pixels, (24, 24), method, antialias=not shrinking)
    reference = np.clip(np.round(reference.numpy()), 0, 255).astype(int)
    assert np.abs(out - reference).max() <= (1 if enlarging else 0)


def test_text_is_not_an_image():
    assert sniff_format(b"hello world, not an image") is None


@pytest.mark.parametrize("bad", [0, (3,), (2, 0), "big"])
def test_bad_image_size_names_the_value(bad):
    with pytest.raises((ValueError, TypeError), match="image_size"):
        to_size(bad)
