"""Image size arguments: one int for square images, or `(height, width)`."""

from __future__ import annotations

from numbers import Integral


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
