"""More sources of labelled images: CSV files or lists of rows, NumPy arrays, TFRecord files
and TFDS datasets, each into the same `ImageData` as a folder of classes.

TFRecord files hold `tf.train.Example`s with the encoded image bytes (`image/encoded`) and
the class indices (`image/class/label`, one or more); `convert_folder` writes them from a
folder, split and sharded, with the class names beside them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.data import ImageData, files_datasets
from tfinetune.files import BadFile, LabelledFiles, find_bad_files
from tfinetune.pipeline import build_splits
from tfinetune.splits import split_indices

Augment = str | Sequence[str | keras.layers.Layer] | None


def files_from_rows(
    rows: Iterable[tuple[str | os.PathLike, object]],
    *,
    root: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    label_delim: str | None = None,
    verify: bool = True,
) -> LabelledFiles:
    """Labelled files from `(path, label)` rows; missing and unreadable files are reported.

    A label is a class name, or for multi-label data a list of names or one string of names
    separated by `label_delim`. Classes are sorted by name unless `class_names` is given.

    Args:
        rows: `(path, label)` pairs.
        root: the folder relative paths are relative to.
        class_names: the classes, in label order.
        label_delim: the separator of several labels in one string (multi-label).
        verify: decode every file once to find corrupt ones.

    Example:
    >>> import tempfile
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=16)
    >>> files = files_from_rows([("ring/ring_0000.png", "a b"), ("ring/ring_0001.png", "b")],
    ...                         root=root, label_delim=" ")
    >>> files.class_names, files.labels
    (['a', 'b'], [(0, 1), (1,)])
    """
    parsed: list[tuple[str, list[str]]] = []
    multi = label_delim is not None
    for row_number, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise ValueError(f"Row {row_number} should be (path, label); it is {row!r}.")
        path, label = row
        if isinstance(label, (list, tuple)):
            names, multi = [str(x) for x in label], True
        elif label_delim is not None:
            names = [x for x in str(label).split(label_delim) if x]
        else:
            names = [str(label)]
        full = Path(root, path) if root is not None and not Path(path).is_absolute() else path
        parsed.append((str(full), names))
    found = sorted({name for _, names in parsed for name in names})
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(f"Labels not among the classes {list(class_names)}: {unknown}.")
    index = {name: i for i, name in enumerate(class_names)}
    bad = [BadFile(p, "file not found") for p, _ in parsed if not os.path.isfile(p)]
    if verify:
        bad += find_bad_files([p for p, _ in parsed if os.path.isfile(p)])
    skip = {b.path for b in bad}
    paths, labels = [], []
    for path, names in parsed:
        if path in skip:
            continue
        paths.append(path)
        ids = tuple(sorted(index[n] for n in names))
        if not multi and len(ids) != 1:
            raise ValueError(f"{path!r} has {len(ids)} labels; use label_delim for multi-label.")
        labels.append(ids if multi else ids[0])
    if not paths:
        raise ValueError("None of the listed images can be read.")
    return LabelledFiles(paths, labels, list(class_names), bad)


def read_csv_files(
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    path_column: str = "path",
    label_column: str = "label",
    label_delim: str | None = None,
    class_names: Sequence[str] | None = None,
) -> LabelledFiles:
    """Labelled files from a CSV with a path column and a label column (header row needed).

    Relative paths are relative to `root`, by default the CSV's folder.

    Args:
        csv_path: the CSV file.
        root: the folder relative paths start from.
        path_column: the header of the path column.
        label_column: the header of the label column.
        label_delim: the separator of several labels in one cell (multi-label).
        class_names: the classes, in label order (default: sorted names).

    Example:
    >>> import tempfile
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=16)
    >>> _ = (root / "labels.csv").write_text("path,label\\nring/ring_0000.png,x\\n")
    >>> read_csv_files(root / "labels.csv").labels
    [0]
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV file not found: {str(csv_path)!r}.")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {path_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{str(csv_path)!r} needs a header row with the columns {path_column!r} and "
                f"{label_column!r}; it has {reader.fieldnames}. Pass path_column/label_column."
            )
        rows = [(r[path_column], r[label_column]) for r in reader]
    return files_from_rows(
        rows,
        root=csv_path.parent if root is None else root,
        class_names=class_names,
        label_delim=label_delim,
    )


def list_datasets(
    files: LabelledFiles,
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 1337,
    **options,
) -> ImageData:
    """Split labelled files (from a CSV, rows or a folder) and build their datasets.

    Args:
        files: the labelled files.
        val_split: the share held out for validation (0: none).
        test_split: the share held out for testing (0: none).
        seed: seeds the split, shuffling and augmentation.
        **options: `image_size`, `batch_size`, `augment`, `resize`, `cache`, `deterministic`
            (see `tfinetune.data.files_datasets`).

    Example:
    >>> import tempfile
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> from tfinetune.files import scan_image_folder
    >>> files = scan_image_folder(write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 5))
    >>> d = list_datasets(files, val_split=0.2, test_split=0.2, image_size=16)
    >>> len(d.train_files), len(d.val_files), len(d.test_files)
    (6, 2, 2)
    """
    parts = {
        name: files.subset(idx)
        for name, idx in split_indices(files.labels, val_split, test_split, seed).items()
    }
    return files_datasets(
        parts["train"],
        parts.get("val"),
        parts.get("test"),
        seed=seed,
        bad_files=files.bad_files,
        **options,
    )


def array_datasets(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 1337,
    image_size: int | tuple[int, int] = 224,
    batch_size: int = 32,
    augment: Augment = "light",
    resize: str = "stretch",
    cache: bool | str = True,
    deterministic: bool = True,
) -> ImageData:
    """Datasets from NumPy arrays of uint8 pixels (`[n, h, w]`, `[n, h, w, 1|3|4]`) and labels.

    Args:
        images: the pixels, 0..255.
        labels: class indices `[n]`, or multi-hot rows `[n, classes]`.
        class_names: the names the labels index.
        val_split: the share held out for validation (0: none), stratified and seeded.
        test_split: the share held out for testing (0: none).
        seed: seeds the split, shuffling and augmentation.
        image_size: the model's input size.
        batch_size: images per batch.
        augment: the training augmentation (without a random crop: pixels are decoded).
        resize: "stretch", "crop" or "pad".
        cache: True (memory when it fits), False, or a disk cache path.
        deterministic: keep a fixed element order.

    Example:
    >>> x = np.zeros((10, 8, 8), "uint8"); y = np.array([0, 1] * 5)
    >>> d = array_datasets(x, y, ["a", "b"], image_size=4, batch_size=8)
    >>> next(iter(d.val))[0].shape
    TensorShape([2, 4, 4, 3])
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ValueError(
            f"images must be uint8 [n, h, w] or [n, h, w, channels] with one label each; got "
            f"{images.dtype} {images.shape} and {len(labels)} labels."
        )
    multi = labels.ndim == 2
    labels = labels.astype("float32" if multi else "int32")  # as every other source gives
    label_keys = [tuple(np.flatnonzero(row).tolist()) for row in labels] if multi else labels
    parts = split_indices(list(label_keys), val_split, test_split, seed)
    sources = {}
    for name, idx in parts.items():
        idx = np.asarray(idx, dtype=int)
        sources[name] = (
            tf.data.Dataset.from_tensor_slices((images[idx], labels[idx])),
            len(idx),
            None,
        )
    built = build_splits(
        sources,
        cache=cache,
        image_size=image_size,
        batch_size=batch_size,
        augment=augment,
        resize=resize,
        num_classes=len(class_names),
        seed=seed,
        deterministic=deterministic,
    )
    return ImageData(
        train=built["train"],
        val=built.get("val"),
        test=built.get("test"),
        class_names=list(class_names),
        train_labels=None if multi else labels[np.asarray(parts["train"], dtype=int)],
        multi_label=multi,
    )
