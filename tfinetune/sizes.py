"""Image size arguments: one int for square images, or `(height, width)`."""

from __future__ import annotations

from numbers import Integral

# The largest model input side: a batch of 32 RGB float32 images of 2048 x 2048 pixels is
# 1.6 GB before the network's activations (which are many times that).
MAX_IMAGE_SIZE = 2048


def to_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalise an image size argument to `(height, width)`, each 1 to `MAX_IMAGE_SIZE`.

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
    if max(size) > MAX_IMAGE_SIZE:
        raise ValueError(
            f"image_size is at most {MAX_IMAGE_SIZE} pixels a side (a batch of 32 images of "
            f"{max(size)} pixels needs {32 * 3 * 4 * size[0] * size[1] / 1e9:.1f} GB before "
            f"the network's activations). Received: image_size={image_size!r}"
        )
    return size  # type: ignore[return-value]
