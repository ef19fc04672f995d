"""Labelled image files: list a folder of classes, find unreadable files, split.

Files are recognised by their content, not only their names, and every candidate is decoded
once (in parallel) so that corrupt, truncated, empty and non-image files are skipped and
reported with the reason before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.images import IMAGE_EXTENSIONS, decode_image, sniff_format
from tfinetune.splits import stratified_split

AUTOTUNE = tf.data.AUTOTUNE


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped, and why."""

    path: str
    reason: str


@dataclass
class LabelledFiles:
    """Image files with labels, the class names they index, and the files skipped.

    Args:
        paths: image file paths.
        labels: one class index per path, or for multi-label data a tuple of indices.
        class_names: the names the labels index.
        bad_files: files that looked like images but could not be read.
    """

    paths: list[str]
    labels: list[int] | list[tuple[int, ...]]
    class_names: list[str]
    bad_files: list[BadFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multi_label(self) -> bool:
        """Whether each file has a set of labels rather than one."""
        return bool(self.labels) and isinstance(self.labels[0], (tuple, list))

    def label_array(self) -> np.ndarray:
        """Labels as int32 class indices, or float32 multi-hot rows for multi-label data."""
        if not self.multi_label:
            return np.asarray(self.labels, dtype="int32").reshape(len(self))
        hot = np.zeros((len(self), len(self.class_names)), dtype="float32")
        for row, labels in enumerate(self.labels):
            hot[row, list(labels)] = 1.0
        return hot

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
    files: LabelledFiles, val_fraction: float, seed: int = 1337, test_fraction: float = 0.0
) -> tuple[LabelledFiles, ...]:
    """A seeded split into train and validation (and test) files, stratified by class.

    The same seed gives the same split on every machine (NumPy's PCG64 generator).

    Args:
        files: the labelled files.
        val_fraction: the share of each class that goes to validation, in (0, 1).
        seed: the random seed.
        test_fraction: the share that goes to a test part (0: no test part).

    Returns:
        `(train, val)`, or `(train, val, test)` when `test_fraction` is above 0.

    Example:
    >>> files = LabelledFiles([f"{i}.jpg" for i in range(10)], [0] * 5 + [1] * 5, ["a", "b"])
    >>> [len(part) for part in split_files(files, 0.4)]
    [6, 4]
    """
    fractions = (val_fraction, test_fraction) if test_fraction else (val_fraction,)
    return tuple(files.subset(part) for part in stratified_split(files.labels, fractions, seed))
