"""`ImageData`: training, validation and test datasets, from labelled files, folders or arrays.

Every dataset yields `(pixels, labels)` batches: float32 RGB pixels in 0..255 (the models
normalise inside) and int32 class indices, or float32 multi-hot rows for multi-label data.
Every source goes through one place (`build_image_data`), with one set of
`PipelineOptions`. TFRecord and TFDS sources are in `tfinetune.data.records` and
`tfinetune.data.tfds`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tfinetune.data.augment import mixes_labels
from tfinetune.data.decode_log import DecodeLog
from tfinetune.data.files import BadFile, LabelledFiles
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.hashes import near_duplicate_pairs
from tfinetune.data.pipeline import AUTOTUNE, PipelineOptions, build_splits
from tfinetune.data.record_index import RecordIndex
from tfinetune.data.splits import class_weights, split_indices, split_parts

# split name -> (source of (image, label) elements, element count, encoded bytes or None)
Sources = Mapping[str, tuple[tf.data.Dataset, int, int | None]]


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
        ignored: known junk passed over (hidden files, `Thumbs.db`, ...).
        excluded: files a person chose to leave out (`--exclude`), with the reason.
        leaks: `(training path, held-out path, bits)` for each held-out (validation or
            test) image that is a near-duplicate of a training image (`find_leaks`).
        train_labels: the training labels (class indices or regression targets), when known.
        multi_label: whether labels are multi-hot rows.
        task: "single_label", "multi_label" or "regression" (labels are float targets).
        decode_log: which training elements have decoded (`DecodeLog`; by their position
            in `train_files` or the training records).
        skipped_in_training: training elements that failed to decode while training, by
            position: the reason (see `tfinetune.runs.skipped`).
        skipped_in_validation: validation elements that failed to decode while the run
            evaluated them, by position: the reason.
        records: for TFRecord shards and TFDS, each split's `RecordIndex`.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    class_names: list[str]
    train_files: LabelledFiles | None = None
    val_files: LabelledFiles | None = None
    test: tf.data.Dataset | None = None
    test_files: LabelledFiles | None = None
    bad_files: list[BadFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    excluded: list[BadFile] = field(default_factory=list)
    leaks: list[tuple[str, str, int]] = field(default_factory=list)
    train_labels: np.ndarray | None = None
    multi_label: bool = False
    task: str = "single_label"
    decode_log: DecodeLog | None = None
    skipped_in_training: dict[int, str] = field(default_factory=dict)
    skipped_in_validation: dict[int, str] = field(default_factory=dict)
    records: dict[str, RecordIndex] = field(default_factory=dict)

    def class_weights(self) -> dict[int, float]:
        """Keras `class_weight`s that balance the training classes (single-label data)."""
        if self.train_labels is None or self.task != "single_label":
            raise ValueError(
                "Class weights need the single-label training labels, which this data "
                "source does not know."
            )
        return class_weights(self.train_labels, len(self.class_names))


def build_image_data(
    sources: Sources,
    class_names: Sequence[str],
    options: PipelineOptions,
    *,
    log_decodes: bool = False,
    **facts: Any,
) -> ImageData:
    """Run each split's source through the pipeline and collect them in an `ImageData`.

    Args:
        sources: split name ("train", "val", "test") -> `(source, count, encoded bytes)`.
        class_names: the names the labels index.
        options: the pipeline options.
        log_decodes: flag each training element that decodes (`ImageData.decode_log`), for
            data no scan decoded beforehand: one NumPy step per batch, which training did
            not measurably slow (`benchmarks/decode_log.py`).
        **facts: the other fields of `ImageData` (files, bad files, labels).

    Example:
    >>> src = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8), "uint8"), [0, 1] * 2))
    >>> d = build_image_data({"train": (src, 4, None)}, ["a", "b"], PipelineOptions(4, 2))
    >>> d.val is None, next(iter(d.train))[0].shape
    (True, TensorShape([2, 4, 4, 3]))
    """
    if facts.get("task") == "regression" and mixes_labels(options.augment):
        raise ValueError(
            f"The augmentation {options.augment!r} mixes labels (MixUp, CutMix), which has no "
            "meaning for regression targets: choose one without mixup or cutmix."
        )
    log = DecodeLog(sources["train"][1]) if log_decodes and "train" in sources else None
    built = build_splits(sources, options, len(class_names), train_log=log)
    return ImageData(
        decode_log=log,
        train=built["train"],
        val=built.get("val"),
        test=built.get("test"),
        class_names=list(class_names),
        **facts,
    )


def file_source(
    files: LabelledFiles,
    deterministic: bool = True,
    *,
    shuffled: bool = False,
    seed: int | None = None,
) -> tuple[tf.data.Dataset, int, int]:
    """`(encoded bytes, label)` elements read in parallel, their count and total bytes.

    Args:
        files: the labelled files.
        deterministic: keep the file order.
        shuffled: for training: shuffle the paths anew every pass and give `(file index,
            (path, label))` elements, not yet read: `build_pipeline` reads each file in the
            step that decodes it, and needs no shuffle buffer of its own.
        seed: seeds the shuffle.

    Example:
    >>> file_source(LabelledFiles([], [], ["a"]))[1:]
    (0, 0)
    """
    paths = tf.constant(list(files.paths), dtype=tf.string)
    source = tf.data.Dataset.from_tensor_slices((paths, files.label_array()))
    if shuffled and len(files):
        indexed = tf.data.Dataset.zip(tf.data.Dataset.range(len(files)), source)
        source = indexed.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    else:
        source = source.map(
            lambda path, label: (tf.io.read_file(path), label),
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )
    return source, len(files), sum(os.path.getsize(p) for p in files.paths)


def files_datasets(
    train_files: LabelledFiles,
    val_files: LabelledFiles | None = None,
    test_files: LabelledFiles | None = None,
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    options: PipelineOptions | None = None,
    **pipeline: Any,
) -> ImageData:
    """Datasets from labelled files (a folder, a CSV, rows): training augmented, others not.

    Without `val_files`, a seeded, stratified `val_split` of `train_files` is held out for
    validation (0 for none); without `test_files`, a `test_split` likewise.

    Args:
        train_files: the training files (see `scan_image_folder`, `read_csv_files`,
            `files_from_rows`).
        val_files: the validation files, or None to split them off.
        test_files: the test files, or None to split them off.
        val_split: the share of `train_files` held out when there are no `val_files`.
        test_split: the share held out for a test set when there are no `test_files`.
        options: the pipeline options (`PipelineOptions`); its seed also seeds the split.
        **pipeline: fields of `PipelineOptions` (`image_size`, `batch_size`, `augment`, ...).

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> files = scan_image_folder(write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 5))
    >>> d = files_datasets(files, val_split=0.2, test_split=0.2, image_size=16)
    >>> len(d.train_files), len(d.val_files), len(d.test_files)
    (6, 2, 2)
    """
    opts = PipelineOptions.resolve(options, **pipeline)
    bad = [b for f in (train_files, val_files, test_files) if f for b in f.bad_files]
    parts = split_parts(train_files, val_files, test_files, val_split=val_split,
                        test_split=test_split, seed=opts.seed)  # fmt: skip
    if not len(parts["train"]):
        raise ValueError("No training images: the training file list is empty.")
    return build_image_data(
        {
            name: file_source(f, opts.deterministic, shuffled=name == "train", seed=opts.seed)
            for name, f in parts.items()
            if f
        },
        train_files.class_names,
        opts,
        train_files=parts["train"],
        val_files=parts["val"],
        test_files=parts["test"],
        bad_files=bad,
        ignored=[i for f in (train_files, val_files, test_files) if f for i in f.ignored],
        excluded=[e for f in (train_files, val_files, test_files) if f for e in f.excluded],
        leaks=find_leaks(parts["train"], [parts["val"], parts["test"]]),
        log_decodes=parts["train"].hashes is None,  # no scan decoded (and hashed) them
        train_labels=None if train_files.multi_label else parts["train"].label_array(),
        multi_label=train_files.multi_label,
        task=train_files.task,
    )


def find_leaks(
    train: LabelledFiles, held_out: Sequence[LabelledFiles | None]
) -> list[tuple[str, str, int]]:
    """Held-out images that are near-duplicates of training images, by perceptual hash.

    A photo in both training and validation data makes every validation number read high.
    Only files whose scan hashed them count (`scan_image_folder(verify=True)`).

    Args:
        train: the training files.
        held_out: the validation and test files (None where there are none).

    Returns:
        `(training path, held-out path, differing bits)` for each pair found.

    Example:
    >>> f = LabelledFiles(["a.jpg"], [0], ["x"], hashes=np.array([5], np.uint64))
    >>> g = LabelledFiles(["b.jpg"], [0], ["x"], hashes=np.array([4], np.uint64))
    >>> find_leaks(f, [g, None])
    [('a.jpg', 'b.jpg', 1)]
    """
    leaks = []
    for part in held_out:
        if part is None or train.hashes is None or part.hashes is None:
            continue
        for i, j, bits in near_duplicate_pairs(train.hashes, part.hashes):
            leaks.append((train.paths[i], part.paths[j], bits))
    return leaks


def image_folder_datasets(
    data_dir: str | os.PathLike,
    val_dir: str | os.PathLike | None = None,
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    options: PipelineOptions | None = None,
    verbose: int = 0,
    **pipeline: Any,
) -> ImageData:
    """Training, validation (and test) datasets from folders of class sub-folders.

    With `val_dir`, validation comes from that folder; otherwise a seeded, stratified
    `val_split` of `data_dir` (0 for none), and a `test_split` likewise. Validation and test
    keep file order and are not augmented.

    Args:
        data_dir: the training folder (one sub-folder per class).
        val_dir: an optional validation folder with the same classes.
        val_split: the share of `data_dir` held out when there is no `val_dir`.
        test_split: the share of `data_dir` held out for a test set.
        options: the pipeline options (`PipelineOptions`); its seed also seeds the split.
        verbose: show progress while checking files.
        **pipeline: fields of `PipelineOptions` (`image_size`, `batch_size`, `augment`, ...).

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 5, size=32)
    >>> data = image_folder_datasets(root, image_size=32, batch_size=4)
    >>> data.class_names, len(data.train_files), len(data.val_files)
    (['ring', 'star'], 8, 2)
    """
    opts = PipelineOptions.resolve(options, **pipeline)
    train_files = scan_image_folder(data_dir, verbose=verbose)
    val_files = None
    if val_dir is not None:
        val_files = scan_image_folder(val_dir, train_files.class_names, verbose=verbose)
    return files_datasets(
        train_files, val_files, val_split=val_split, test_split=test_split, options=opts
    )


def array_datasets(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    options: PipelineOptions | None = None,
    **pipeline: Any,
) -> ImageData:
    """Datasets from NumPy arrays of uint8 pixels (`[n, h, w]`, `[n, h, w, 1|3|4]`) and labels.

    The training augmentation cannot use a decode-time random crop (the pixels are decoded
    already): use "light" or a list of layers.

    Args:
        images: the pixels, 0..255.
        labels: class indices `[n]` (integers), multi-hot rows `[n, classes]`, or float
            regression targets `[n]`.
        class_names: the names the labels index.
        val_split: the share held out for validation (0: none), stratified and seeded.
        test_split: the share held out for testing (0: none).
        options: the pipeline options (`PipelineOptions`); its seed also seeds the split.
        **pipeline: fields of `PipelineOptions`.

    Example:
    >>> x = np.zeros((10, 8, 8), "uint8"); y = np.array([0, 1] * 5)
    >>> d = array_datasets(x, y, ["a", "b"], image_size=4, batch_size=8)
    >>> next(iter(d.val))[0].shape
    TensorShape([2, 4, 4, 3])
    """
    opts = PipelineOptions.resolve(options, **pipeline)
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(
            f"images must be uint8 [n, h, w] or [n, h, w, channels] with one label each; got "
            f"{images.dtype} {images.shape} and {len(labels)} labels."
        )
    multi = labels.ndim == 2
    task = "multi_label" if multi else "regression" if labels.dtype.kind == "f" else "single_label"
    labels = labels.astype("int32" if task == "single_label" else "float32")  # as files give
    label_keys = (
        [tuple(np.flatnonzero(row).tolist()) for row in labels] if multi else labels.tolist()
    )
    parts = {
        name: np.asarray(indices, dtype=int)
        for name, indices in split_indices(
            list(label_keys), val_split, test_split, opts.seed
        ).items()
    }
    sources = {
        name: (tf.data.Dataset.from_tensor_slices((images[idx], labels[idx])), len(idx), None)
        for name, idx in parts.items()
    }
    return build_image_data(
        sources,
        class_names,
        opts,
        train_labels=None if multi else labels[parts["train"]],
        multi_label=multi,
        task=task,
    )
