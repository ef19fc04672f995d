"""Datasets from labelled image files: folders of classes, split and run through the pipeline.

Every dataset yields `(pixels, labels)` batches: float32 RGB pixels in 0..255 (the models
normalise inside) and int32 class indices, or float32 multi-hot rows for multi-label data.
Other sources (CSV, TFRecord, TFDS, NumPy) are in `tfinetune.sources`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from tfinetune.files import (
    BadFile,
    LabelledFiles,
    find_bad_files,
    scan_image_folder,
    split_files,
)
from tfinetune.pipeline import AUTOTUNE, build_pipeline, build_splits
from tfinetune.splits import class_weights

__all__ = [
    "BadFile",
    "ImageData",
    "LabelledFiles",
    "files_datasets",
    "find_bad_files",
    "image_folder_datasets",
    "make_dataset",
    "scan_image_folder",
    "split_files",
]


def make_dataset(
    files: LabelledFiles,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    *,
    training: bool = False,
    augment: str | Sequence[str | keras.layers.Layer] | None = "light",
    resize: str = "stretch",
    cache: bool | str | os.PathLike = True,
    seed: int | None = None,
    deterministic: bool = True,
    one_hot: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetched dataset of `(pixels, labels)` from labelled image files.

    Files are read and decoded in parallel; see `tfinetune.pipeline.build_pipeline` for
    caching, shuffling and augmentation.

    Args:
        files: the labelled files.
        image_size: the model's input size.
        batch_size: images per batch.
        training: shuffle each epoch and augment.
        augment: the augmentation policy when training (see `tfinetune.augment`).
        resize: "stretch", "crop" or "pad".
        cache: True (memory, when it fits), False, or a file path for a disk cache.
        seed: seeds shuffling and augmentation.
        deterministic: keep a fixed element order.
        one_hot: one-hot labels (as MixUp and CutMix give; see `build_pipeline`).

    Example:
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> import tempfile
    >>> files = scan_image_folder(write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 4))
    >>> x, y = next(iter(make_dataset(files, 32, batch_size=8)))
    >>> x.shape, y.shape
    (TensorShape([8, 32, 32, 3]), TensorShape([8]))
    """
    source, count, encoded_bytes = file_source(files, deterministic)
    return build_pipeline(
        source,
        count=count,
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        augment=augment,
        resize=resize,
        cache=cache,
        encoded_bytes=encoded_bytes,
        num_classes=len(files.class_names),
        one_hot=one_hot,
        seed=seed,
        deterministic=deterministic,
    )


def file_source(
    files: LabelledFiles, deterministic: bool = True
) -> tuple[tf.data.Dataset, int, int]:
    """`(encoded bytes, label)` elements read in parallel, their count and total bytes.

    Args:
        files: the labelled files.
        deterministic: keep the file order.

    Example:
    >>> file_source(LabelledFiles([], [], ["a"]))[1:]
    (0, 0)
    """
    paths = tf.constant(list(files.paths), dtype=tf.string)
    source = tf.data.Dataset.from_tensor_slices((paths, files.label_array()))
    source = source.map(
        lambda path, label: (tf.io.read_file(path), label),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    return source, len(files), sum(os.path.getsize(p) for p in files.paths)


@dataclass
class ImageData:
    """Training, validation and test datasets with their class names and what was skipped.

    Args:
        train: the training dataset (shuffled and augmented).
        val: the validation dataset, or None.
        class_names: the names the labels index, in label order.
        train_files: the training files, when the source is files.
        val_files: the validation files, when the source is files.
        test: an optional test dataset.
        test_files: the test files, when the source is files.
        bad_files: files that were skipped, with the reason.
        train_labels: the training labels (for class weights), when known.
        multi_label: whether labels are multi-hot rows.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    class_names: list[str]
    train_files: LabelledFiles | None = None
    val_files: LabelledFiles | None = None
    test: tf.data.Dataset | None = None
    test_files: LabelledFiles | None = None
    bad_files: list[BadFile] = field(default_factory=list)
    train_labels: np.ndarray | None = None
    multi_label: bool = False

    def class_weights(self) -> dict[int, float]:
        """Keras `class_weight`s that balance the training classes (single-label data)."""
        if self.train_labels is None or self.multi_label:
            raise ValueError(
                "Class weights need the single-label training labels, which this data "
                "source does not know."
            )
        return class_weights(self.train_labels, len(self.class_names))


def files_datasets(
    train_files: LabelledFiles,
    val_files: LabelledFiles | None = None,
    test_files: LabelledFiles | None = None,
    *,
    image_size: int | tuple[int, int] = 224,
    batch_size: int = 32,
    seed: int = 1337,
    augment: str | Sequence[str | keras.layers.Layer] | None = "light",
    resize: str = "stretch",
    cache: bool | str | os.PathLike = True,
    deterministic: bool = True,
    bad_files: Sequence[BadFile] = (),
) -> ImageData:
    """Datasets from already split labelled files: training augmented, the others not.

    Args:
        train_files: the training files.
        val_files: the validation files, or None.
        test_files: the test files, or None.
        image_size: the model's input size.
        batch_size: images per batch.
        seed: seeds shuffling and augmentation.
        augment: the training augmentation policy.
        resize: "stretch", "crop" or "pad".
        cache: True (memory when it fits), False, or a disk cache path (one file per part).
        deterministic: keep a fixed element order.
        bad_files: files skipped while listing, to report.

    Example:
    >>> files = LabelledFiles([], [], ["a"])
    >>> files_datasets(files)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: No training images...
    """
    if not len(train_files):
        raise ValueError("No training images: the training file list is empty.")
    parts = {"train": train_files, "val": val_files, "test": test_files}
    built = build_splits(
        {name: file_source(f, deterministic) for name, f in parts.items() if f},
        cache=cache,
        image_size=image_size,
        batch_size=batch_size,
        augment=augment,
        resize=resize,
        num_classes=len(train_files.class_names),
        seed=seed,
        deterministic=deterministic,
    )
    return ImageData(
        train=built["train"],
        val=built.get("val"),
        class_names=list(train_files.class_names),
        train_files=train_files,
        val_files=val_files,
        test=built.get("test"),
        test_files=test_files,
        bad_files=list(bad_files),
        train_labels=None if train_files.multi_label else train_files.label_array(),
        multi_label=train_files.multi_label,
    )


def image_folder_datasets(
    data_dir: str | os.PathLike,
    val_dir: str | os.PathLike | None = None,
    *,
    image_size: int | tuple[int, int] = 224,
    batch_size: int = 32,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 1337,
    augment: str | Sequence[str | keras.layers.Layer] | None = "light",
    resize: str = "stretch",
    cache: bool | str | os.PathLike = True,
    deterministic: bool = True,
    verbose: bool = False,
) -> ImageData:
    """Training, validation (and test) datasets from folders of class sub-folders.

    With `val_dir`, validation comes from that folder; otherwise a seeded, stratified
    `val_split` of `data_dir` (0 for none), and a `test_split` likewise. Validation and test
    keep file order and are not augmented.

    Args:
        data_dir: the training folder (one sub-folder per class).
        val_dir: an optional validation folder with the same classes.
        image_size: the model's input size.
        batch_size: images per batch.
        val_split: the share of `data_dir` held out when there is no `val_dir`.
        test_split: the share of `data_dir` held out for a test set.
        seed: seeds the split, shuffling and augmentation.
        augment: the training augmentation policy.
        resize: "stretch", "crop" or "pad".
        cache: see `make_dataset`.
        deterministic: keep a fixed element order.
        verbose: show progress while checking files.

    Example:
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 5, size=32)
    >>> data = image_folder_datasets(root, image_size=32, batch_size=4)
    >>> data.class_names, len(data.train_files), len(data.val_files)
    (['ring', 'star'], 8, 2)
    """
    all_files = scan_image_folder(data_dir, verbose=verbose)
    bad = list(all_files.bad_files)
    test_files = None
    if val_dir is not None:
        train_files = all_files
        if test_split:
            train_files, test_files = split_files(all_files, test_split, seed)
        val_files = scan_image_folder(val_dir, all_files.class_names, verbose=verbose)
        bad += val_files.bad_files
    elif val_split:
        train_files, val_files, *rest = split_files(all_files, val_split, seed, test_split)
        test_files = rest[0] if rest else None
    else:
        train_files, val_files = all_files, None
        if test_split:
            train_files, test_files = split_files(all_files, test_split, seed)
    return files_datasets(
        train_files,
        val_files,
        test_files,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        augment=augment,
        resize=resize,
        cache=cache,
        deterministic=deterministic,
        bad_files=bad,
    )
