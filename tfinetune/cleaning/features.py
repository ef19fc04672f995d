"""What the cleaning detectors look at: each image's perceptual hash and its embedding by a
pretrained backbone, computed in one pass over the files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfinetune.bars import progress_bar
from tfinetune.data.hashes import as_uint64, perceptual_hash
from tfinetune.data.images import decode_image, resize_image
from tfinetune.models.backbones import build_backbone, get_spec
from tfinetune.models.normalization import PixelNormalization
from tfinetune.sizes import to_size


def feature_model(
    backbone: str = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
) -> keras.Model:
    """A frozen backbone with its normalisation and average pooling: pixels to embeddings.

    Args:
        backbone: a catalogue name of an image backbone.
        weights: `"imagenet"`, a weights file, or None (random: only for tests).
        image_size: the input size; default: the backbone's.

    Example:
    >>> feature_model("convnet_tiny", None, 32).output_shape
    (None, 128)
    """
    spec = get_spec(backbone)
    if spec.modality != "image":
        raise ValueError(
            f"Cleaning looks at images; {spec.name!r} takes {spec.modality}. Pass an image "
            "backbone, such as mobilenet_v2."
        )
    size = to_size(spec.default_size if image_size is None else image_size)
    body = build_backbone(spec, size, weights)
    inputs = keras.Input((*size, 3), name="pixels")
    x = body(PixelNormalization(spec.normalization, name="normalize")(inputs))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, pooled, name=f"{spec.name}_features")


def hashes_and_embeddings(
    paths: Sequence[str], model: keras.Model, batch_size: int = 32, verbose: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each file's perceptual hash, L2-normalised embedding and pixel count, in one decode.

    Args:
        paths: image files that decode (as a scan leaves them).
        model: a `feature_model`.
        batch_size: images per batch.
        verbose: show a progress bar.

    Returns:
        `(hashes, embeddings, pixels)`: uint64 `[n]`, float32 `[n, features]`, int64 `[n]`.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import glob, tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 3, size=32)
    >>> paths = sorted(glob.glob(f"{root}/ring/*"))
    >>> h, e, n = hashes_and_embeddings(paths, feature_model("convnet_tiny", None, 32), verbose=0)
    >>> h.shape, e.shape, n.tolist()
    ((3,), (3, 128), [1024, 1024, 1024])
    """
    size = tuple(model.input_shape[1:3])

    def load(path):
        image = decode_image(tf.io.read_file(path))
        pixels = tf.reduce_prod(tf.shape(image, out_type=tf.int64)[:2])
        return perceptual_hash(image), tf.cast(resize_image(image, size), tf.float32), pixels

    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    progress = progress_bar(len(paths), "image", "embedding", verbose)
    hashes, embeddings, counts = [], [], []
    for hash_bytes, images, pixels in ds.batch(batch_size).prefetch(2).as_numpy_iterator():
        hashes.append(hash_bytes)
        embeddings.append(np.asarray(model(images, training=False)))
        counts.append(pixels)
        if progress:
            progress.add(len(images))
    if not hashes:
        empty = np.zeros((0, model.output_shape[-1]), np.float32)
        return np.zeros(0, np.uint64), empty, np.zeros(0, np.int64)
    vectors = np.concatenate(embeddings).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return as_uint64(np.concatenate(hashes)), vectors, np.concatenate(counts)
