"""Image datasets: list a folder of classes, find bad files, split, and build `tf.data` pipelines.

Every dataset yields `(pixels, labels)` batches: float32 RGB pixels in 0..255 (the models
normalise inside) and int32 class indices.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.augment import build_augmentation
from tfinetune.images import (
    IMAGE_EXTENSIONS,
    decode_and_resize,
    decode_image,
    sniff_format,
    to_size,
)

AUTOTUNE = tf.data.AUTOTUNE
# Decoded images are cached in memory when they take less than this.
MEMORY_CACHE_LIMIT = 2 * 1024**3


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped, and why."""

    path: str
    reason: str


@dataclass
class LabelledFiles:
    """Image files with integer labels, the class names they index, and the files skipped.

    Args:
        paths: image file paths.
        labels: one class index per path.
        class_names: the names the labels index.
        bad_files: files that looked like images but could not be read.
    """

    paths: list[str]
    labels: list[int]
    class_names: list[str]
    bad_files: list[BadFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Sequence[int]) -> LabelledFiles:
        """The files at `indices`, with the same classes (and no bad files)."""
        return LabelledFiles(
            [self.paths[i] for i in indices], [self.labels[i] for i in indices], self.class_names
        )


# === Finding bad files ===


def _tf_error_text(err: Exception) -> str:
    text = getattr(err, "message", str(err)).split("\n")[0]
    text = text.split("}} ")[-1].replace("[Op:DecodeImage]", "").strip()
    return text.removesuffix("name:").strip()


def find_bad_files(paths: Sequence[str], verbose: bool = False) -> list[BadFile]:
    """Decode every file once, in parallel, and return those that fail with the reason.

    Args:
        paths: image file paths.
        verbose: show a progress bar.

    Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "notes.jpg")
    >>> _ = open(p, "w").write("not a picture")
    >>> find_bad_files([p])[0].reason.startswith("cannot be decoded: Unknown image file format")
    True
    """
    if not paths:
        return []
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
    ds = ds.map(
        lambda i, p: (i, tf.shape(decode_image(tf.io.read_file(p)))[0]),
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    ).ignore_errors()
    progress = keras.utils.Progbar(len(paths), unit_name="file") if verbose else None
    readable = set()
    for index, _ in ds.batch(256).as_numpy_iterator():
        readable.update(index.tolist())
        if progress:
            progress.add(len(index))
    bad = []
    for i, path in enumerate(paths):
        if i in readable:
            continue
        try:
            decode_image(tf.io.read_file(path))
            reason = "cannot be decoded"
        except (tf.errors.OpError, ValueError) as err:
            reason = f"cannot be decoded: {_tf_error_text(err)}"
        bad.append(BadFile(str(path), reason))
    return bad


def _classify_file(path: Path) -> tuple[bool, str | None]:
    """Whether a file is an image candidate, and a reason when it should be reported as bad."""
    is_image_name = path.suffix.lower() in IMAGE_EXTENSIONS
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError as err:
        return False, f"cannot be read: {err.strerror}"
    if not header:
        return False, "empty file (0 bytes)" if is_image_name else None
    if sniff_format(header) is None:
        if is_image_name:
            return False, f"not an image: the content starts with {header[:8]!r}"
        return False, None  # Not named as an image and not one: not ours to report.
    return True, None


# === Listing folders ===


def scan_image_folder(
    directory: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    verbose: bool = False,
) -> LabelledFiles:
    """List a folder with one sub-folder per class; skip and report unreadable files.

    Files are found in nested folders too, and recognised by their content. Files named as
    images that are empty, not images, or fail to decode are reported in `bad_files`.

    Args:
        directory: the folder holding one sub-folder per class.
        class_names: the expected classes (for example a training set's), in label order.
        verify: decode every file once to find corrupt ones.
        verbose: show a progress bar while verifying.

    Example:
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["circle", "square"], 3, size=32)
    >>> scan_image_folder(root).class_names
    ['circle', 'square']
    """
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(
            f"Data folder not found: {str(root)!r}. Pass a folder with one sub-folder per class."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"Expected a folder with one sub-folder per class, got a file: {str(root)!r}."
        )
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise ValueError(
            f"Data folder {str(root)!r} has no class sub-folders. Expected "
            f"{root}/<class name>/<image files>."
        )
    if class_names is None:
        class_names = found
    else:
        class_names = list(class_names)
        extra = sorted(set(found) - set(class_names))
        if extra:
            raise ValueError(
                f"Data folder {str(root)!r} has classes the model does not know: {extra}. "
                f"Expected a subset of {class_names}."
            )
    paths, labels, bad = [], [], []
    for label, name in enumerate(class_names):
        class_dir = root / name
        count = 0
        for dirpath, dirnames, filenames in os.walk(class_dir) if class_dir.is_dir() else []:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                path = Path(dirpath) / filename
                ok, reason = _classify_file(path)
                if ok:
                    paths.append(str(path))
                    labels.append(label)
                    count += 1
                elif reason:
                    bad.append(BadFile(str(path), reason))
        if count == 0 and class_dir.is_dir():
            raise ValueError(
                f"Class folder {str(class_dir)!r} has no image files (JPEG, PNG, GIF or BMP). "
                "Add images to it or remove the folder."
            )
    if verify:
        undecodable = find_bad_files(paths, verbose=verbose)
        if undecodable:
            drop = {b.path for b in undecodable}
            kept = [(p, y) for p, y in zip(paths, labels, strict=True) if p not in drop]
            paths, labels = [p for p, _ in kept], [y for _, y in kept]
            bad.extend(undecodable)
    if not paths:
        raise ValueError(f"No readable images in {str(root)!r}.")
    return LabelledFiles(paths, labels, list(class_names), bad)


def split_files(
    files: LabelledFiles, val_fraction: float, seed: int = 1337
) -> tuple[LabelledFiles, LabelledFiles]:
    """A seeded split into train and validation files, stratified by class.

    The same seed gives the same split on every machine (NumPy's PCG64 generator).

    Args:
        files: the labelled files.
        val_fraction: the share of each class that goes to validation, in (0, 1).
        seed: the random seed.

    Example:
    >>> files = LabelledFiles([f"{i}.jpg" for i in range(10)], [0] * 5 + [1] * 5, ["a", "b"])
    >>> [len(part) for part in split_files(files, 0.4)]
    [6, 4]
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1). Received: {val_fraction!r}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(files.labels)
    train_idx, val_idx = [], []
    for label in range(len(files.class_names)):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = round(len(members) * val_fraction)
        if len(members) >= 2:
            n_val = min(max(n_val, 1), len(members) - 1)
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    return files.subset(sorted(train_idx)), files.subset(sorted(val_idx))


# === Pipelines ===


def make_dataset(
    files: LabelledFiles,
    image_size: int | tuple[int, int],
    batch_size: int = 32,
    *,
    training: bool = False,
    augment: str | Sequence[keras.layers.Layer] | None = "light",
    cache: bool | str = True,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A batched, prefetched dataset of `(pixels, labels)` from labelled image files.

    Decoding and resizing run in parallel. Decoded images are cached (in memory when they fit
    in 2 GiB, or in the file named by `cache`), then shuffled and augmented when training.
    A file that still fails to decode is dropped rather than stopping an epoch.

    Args:
        files: the labelled files.
        image_size: the model's input size.
        batch_size: images per batch.
        training: shuffle each epoch and augment.
        augment: the augmentation policy when training (see `tfinetune.augment`).
        cache: True (memory, when it fits), False, or a file path for a disk cache.
        seed: seeds shuffling and augmentation.

    Example:
    >>> from tfinetune.synthetic import write_shapes_folder
    >>> import tempfile
    >>> files = scan_image_folder(write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 4))
    >>> x, y = next(iter(make_dataset(files, 32, batch_size=8)))
    >>> x.shape, y.shape
    (TensorShape([8, 32, 32, 3]), TensorShape([8]))
    """
    size = to_size(image_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: {batch_size!r}")
    ds = tf.data.Dataset.from_tensor_slices(
        (list(files.paths), np.asarray(files.labels, dtype="int32"))
    )
    n_bytes = len(files) * size[0] * size[1] * 3
    in_memory = cache is True and n_bytes <= MEMORY_CACHE_LIMIT
    if training and not in_memory:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda path, label: (decode_and_resize(tf.io.read_file(path), size), label),
        num_parallel_calls=AUTOTUNE,
    ).ignore_errors(log_warning=True)
    if in_memory:
        ds = ds.cache()
    elif isinstance(cache, (str, os.PathLike)):
        ds = ds.cache(str(cache))
    if training and in_memory:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    augmentation = build_augmentation(augment, seed=seed) if training else None
    if augmentation is not None:
        ds = ds.map(
            lambda x, y: (augmentation(tf.cast(x, tf.float32), training=True), y),
            num_parallel_calls=AUTOTUNE,
        )
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


@dataclass
class ImageData:
    """Training and validation datasets with their files and class names."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    class_names: list[str]
    train_files: LabelledFiles
    val_files: LabelledFiles | None

    @property
    def bad_files(self) -> list[BadFile]:
        """Every file skipped in training and validation folders."""
        return self.train_files.bad_files + (self.val_files.bad_files if self.val_files else [])


def image_folder_datasets(
    data_dir: str | os.PathLike,
    val_dir: str | os.PathLike | None = None,
    *,
    image_size: int | tuple[int, int] = 224,
    batch_size: int = 32,
    val_split: float = 0.2,
    seed: int = 1337,
    augment: str | Sequence[keras.layers.Layer] | None = "light",
    cache: bool | str = True,
    verbose: bool = False,
) -> ImageData:
    """Training and validation datasets from folders of class sub-folders.

    With `val_dir`, validation comes from that folder; otherwise a seeded, stratified
    `val_split` of `data_dir` (0 for none). Validation keeps file order and is not augmented.

    Args:
        data_dir: the training folder (one sub-folder per class).
        val_dir: an optional validation folder with the same classes.
        image_size: the model's input size.
        batch_size: images per batch.
        val_split: the share of `data_dir` held out when there is no `val_dir`.
        seed: seeds the split, shuffling and augmentation.
        augment: the training augmentation policy.
        cache: see `make_dataset`.
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
    if val_dir is not None:
        train_files = all_files
        val_files = scan_image_folder(val_dir, all_files.class_names, verbose=verbose)
    elif val_split:
        train_files, val_files = split_files(all_files, val_split, seed)
        train_files.bad_files = all_files.bad_files
    else:
        train_files, val_files = all_files, None
    common = {"image_size": image_size, "batch_size": batch_size, "cache": cache, "seed": seed}
    train = make_dataset(train_files, training=True, augment=augment, **common)
    val = make_dataset(val_files, training=False, **common) if val_files else None
    return ImageData(train, val, all_files.class_names, train_files, val_files)
