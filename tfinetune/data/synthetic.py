"""Procedurally generated shape photos, for the offline demo and for tests.

Each image is one filled shape of random size, position, rotation and colour on a noisy,
shaded background with a few distracting strokes. Different shape sets make different tasks
that share low-level structure (edges, corners, curvature), which is what transfers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf


def _polar_radius(kind: str, theta: np.ndarray, radius: float) -> np.ndarray:
    """The shape's boundary radius at each angle, for star-shaped figures."""
    polygons = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}
    lobes = {"clover": 3, "flower": 5, "cog": 8}
    if kind in polygons:
        k = polygons[kind]
        sector = np.mod(theta, 2 * np.pi / k) - np.pi / k
        return radius * np.cos(np.pi / k) / np.cos(sector)
    if kind in lobes:
        return radius * (0.75 + 0.25 * np.cos(lobes[kind] * theta))
    if kind == "star":
        sector = np.abs(np.mod(theta, 2 * np.pi / 5) - np.pi / 5) / (np.pi / 5)
        return radius * (0.45 + 0.55 * sector)
    return np.full_like(theta, radius)  # circle and ring


SHAPES = (
    "circle",
    "ring",
    "triangle",
    "square",
    "pentagon",
    "hexagon",
    "clover",
    "flower",
    "cog",
    "star",
    "cross",
    "ellipse",
)


def _mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    radius = rng.uniform(0.22, 0.38) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    dy, dx = yy - cy, xx - cx
    rotation = rng.uniform(0, 2 * np.pi)
    theta = np.arctan2(dy, dx) + rotation
    dist = np.hypot(dy, dx)
    if kind == "ring":
        return (dist < radius) & (dist > radius * 0.6)
    if kind == "cross":
        c, s = np.cos(rotation), np.sin(rotation)
        u, v = dx * c - dy * s, dx * s + dy * c
        arm = radius * 0.3
        return ((np.abs(u) < arm) & (np.abs(v) < radius)) | (
            (np.abs(v) < arm) & (np.abs(u) < radius)
        )
    if kind == "ellipse":
        c, s = np.cos(rotation), np.sin(rotation)
        u, v = dx * c - dy * s, dx * s + dy * c
        return (u / radius) ** 2 + (v / (radius * 0.5)) ** 2 < 1
    if kind not in SHAPES:
        raise ValueError(f"Unknown shape. Expected one of {SHAPES}. Received: {kind!r}")
    return dist < _polar_radius(kind, theta, radius)


def render_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one `uint8` RGB image `[size, size, 3]` of a shape on a cluttered background.

    Args:
        kind: one of `SHAPES`.
        size: the image's height and width.
        rng: the random generator (for reproducible images).

    Example:
    >>> render_shape("star", 32, np.random.default_rng(0)).shape
    (32, 32, 3)
    """
    background = rng.uniform(0, 255, 3)
    gradient = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-40, 40, 3)
    image = np.broadcast_to(background, (size, size, 3)) + gradient
    for _ in range(3):  # distracting strokes
        a, b = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        t = np.linspace(0, 1, size * 2)[:, None]
        pts = np.clip((a + (b - a) * t).astype(int), 0, size - 1)
        image[pts[:, 0], pts[:, 1]] = rng.uniform(0, 255, 3)
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - background).sum() < 150:
        colour = rng.uniform(0, 255, 3)
    image = np.where(_mask(kind, size, rng)[..., None], colour, image)
    image = image + rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype("uint8")


def write_shapes_folder(
    root: str | os.PathLike,
    shapes: Sequence[str],
    per_class: int,
    *,
    size: int = 64,
    seed: int = 0,
    image_format: str = "png",
) -> Path:
    """Write `per_class` images of each shape into `root/<shape>/`, as PNG or JPEG files.

    Args:
        root: the folder to create (it may exist).
        shapes: shape names from `SHAPES`; each becomes a class folder.
        per_class: images per class.
        size: image height and width.
        seed: the random seed.
        image_format: `"png"` or `"jpeg"`.

    Returns:
        The folder.

    Example:
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring", "cross"], 2, size=16)
    >>> sorted(p.name for p in root.iterdir())
    ['cross', 'ring']
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg'. Received: {image_format!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    encode = tf.io.encode_png if image_format == "png" else tf.io.encode_jpeg
    suffix = ".png" if image_format == "png" else ".jpg"
    for kind in shapes:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            data = encode(render_shape(kind, size, rng)).numpy()
            (folder / f"{kind}_{i:04d}{suffix}").write_bytes(data)
    return root
