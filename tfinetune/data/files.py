"""Labelled image files, the files that were skipped, finding unreadable files, and splits.

Every candidate file is decoded once (in parallel) so that corrupt, truncated and non-image
files are skipped and reported with the reason before training starts.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tfinetune.bars import progress_bar
from tfinetune.data.hashes import as_uint64, perceptual_hash
from tfinetune.data.headers import check_header
from tfinetune.data.images import decode_image, undecodable_reason
from tfinetune.data.splits import stratified_split

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
        labels: one class index per path, or for multi-label data a tuple of indices, or
            for regression a float.
        class_names: the names the labels index (for regression: the target's name).
        bad_files: files that were skipped, with the reason.
        ignored: known junk that was passed over (hidden files, `Thumbs.db`, ...).
        hashes: each image's perceptual hash (uint64, `tfinetune.data.hashes`), when the
            scan computed them.
        excluded: files a person chose to leave out (`--exclude`), with the reason.
    """

    paths: list[str]
    labels: list[int] | list[tuple[int, ...]] | list[float]
    class_names: list[str]
    bad_files: list[BadFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    hashes: np.ndarray | None = None
    excluded: list[BadFile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def multi_label(self) -> bool:
        """Whether each file has a set of labels rather than one."""
        return bool(self.labels) and isinstance(self.labels[0], (tuple, list))

    @property
    def task(self) -> str:
        """ "single_label", "multi_label" (tuples of indices) or "regression" (floats)."""
        if self.multi_label:
            return "multi_label"
        return "regression" if self.labels and isinstance(self.labels[0], float) else "single_label"

    def label_array(self) -> np.ndarray:
        """Labels as int32 class indices, float32 multi-hot rows, or float32 targets."""
        return label_array(self.labels, len(self.class_names), self.task)

    def without(self, bad: Sequence[BadFile]) -> LabelledFiles:
        """These files less the `bad` ones, which join `bad_files`.

        Args:
            bad: files to drop, with the reason.
        """
        drop = {b.path for b in bad}
        keep = [i for i, path in enumerate(self.paths) if path not in drop]
        kept = self.subset(keep)
        kept.bad_files = [*self.bad_files, *bad]
        kept.ignored = list(self.ignored)
        kept.excluded = list(self.excluded)
        return kept

    def excluding(self, reasons: dict[str, str]) -> LabelledFiles:
        """These files less those a person chose to leave out, which join `excluded`.

        Args:
            reasons: the reason for each file to leave out, by its real path
                (`os.path.realpath`).
        """
        out = [BadFile(p, reasons[os.path.realpath(p)]) for p in self.paths
               if os.path.realpath(p) in reasons]  # fmt: skip
        kept = self.without(out)
        kept.bad_files = list(self.bad_files)
        kept.excluded = [*self.excluded, *out]
        return kept

    def subset(self, indices: Sequence[int]) -> LabelledFiles:
        """The files at `indices`, with the same classes (and no bad or ignored files)."""
        indices = list(indices)
        return LabelledFiles(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices],
            self.class_names,
            hashes=None if self.hashes is None else self.hashes[np.asarray(indices, dtype=int)],
        )


def label_array(labels: Sequence, num_classes: int, task: str) -> np.ndarray:
    """Labels as int32 class indices, float32 multi-hot rows, or float32 targets.

    Args:
        labels: class indices, tuples of indices (multi-label) or numbers (regression).
        num_classes: the number of classes.
        task: "single_label", "multi_label" or "regression".

    Example:
    >>> label_array([(0,), (0, 2)], 3, "multi_label").tolist()
    [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    """
    if task == "regression":
        return np.asarray(labels, dtype="float32").reshape(len(labels))
    if task != "multi_label":
        return np.asarray(labels, dtype="int32").reshape(len(labels))
    hot = np.zeros((len(labels), num_classes), dtype="float32")
    for row, ids in enumerate(labels):
        hot[row, list(ids)] = 1.0
    return hot


# === Finding bad files ===


def tf_error_text(err: Exception) -> str:
    """A TensorFlow error's message without its op and function names.

    Args:
        err: the error raised by an op.
    """
    text = getattr(err, "message", str(err)).split("\n")[0]
    text = re.sub(r"\[Op:\w+\]", "", text.split("}} ")[-1]).strip()
    return text.removesuffix("name:").strip()


# How a scan checks files before training: "decode" every image (and hash it), read only the
# "header" (format, size, decompression bombs), or "auto": decode up to this many files.
SCAN_CHECKS = ("auto", "decode", "header")
AUTO_DECODE_LIMIT = 20_000


def scan_decoder(check: str, count: int) -> Callable:
    """What a scan of `count` files runs on each: `decode_image` or `check_header`.

    Args:
        check: "auto" (decode up to `AUTO_DECODE_LIMIT` files, headers above), "decode" or
            "header".
        count: the number of files.

    Example:
    >>> scan_decoder("auto", 100).__name__, scan_decoder("auto", 10**6).__name__
    ('decode_image', 'check_header')
    """
    if check not in SCAN_CHECKS:
        raise ValueError(f"Unknown scan check {check!r}: use one of {', '.join(SCAN_CHECKS)}.")
    if check == "decode" or (check == "auto" and count <= AUTO_DECODE_LIMIT):
        return decode_image
    return check_header


def find_bad_files(
    paths: Sequence[str], verbose: int = 0, decode: Callable = decode_image
) -> list[BadFile]:
    """Decode every file once, in parallel, and return those that fail with the reason.

    Args:
        paths: image file paths.
        verbose: show a progress bar.
        decode: the decoder, from a scalar string of file bytes to a tensor (default:
            images; `tfinetune.data.audio.decode_audio` for sound files).

    Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "notes.jpg")
    >>> _ = open(p, "w").write("not a picture")
    >>> find_bad_files([p])[0].reason.startswith("cannot be decoded: Unknown image file format")
    True
    """
    return check_files(paths, verbose, decode)[0]


def check_files(
    paths: Sequence[str], verbose: int = 0, decode: Callable = decode_image
) -> tuple[list[BadFile], np.ndarray | None]:
    """Decode every file once, in parallel: the files that fail, and the images' hashes.

    Images (the default `decode`) are hashed in the same pass (`perceptual_hash`), so near
    duplicates can be found without reading the files again.

    Args:
        paths: file paths.
        verbose: show a progress bar.
        decode: the decoder, from a scalar string of file bytes to a tensor.

    Returns:
        The bad files with the reason, and for images one uint64 hash per path (0 where the
        file is bad), else None.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import glob, tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=32)
    >>> bad, hashes = check_files(sorted(glob.glob(f"{root}/ring/*")))
    >>> bad, hashes.shape
    ([], (2,))
    """
    if not paths:
        return [], (np.zeros(0, np.uint64) if decode is decode_image else None)
    hashing = decode is decode_image

    def check(i, p):
        value = decode(tf.io.read_file(p))
        if hashing:
            return i, perceptual_hash(value)
        # Depend on the decoded value, so that the decode is never pruned from the graph.
        return i, tf.fill([8], tf.cast(tf.size(value) * 0, tf.uint8))

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), list(paths)))
    ds = ds.map(check, num_parallel_calls=AUTOTUNE, deterministic=False).ignore_errors()
    progress = progress_bar(len(paths), "file", "checking", verbose)
    hashes = np.zeros((len(paths), 8), np.uint8)
    readable = np.zeros(len(paths), bool)
    for index, rows in ds.batch(256).as_numpy_iterator():
        hashes[index], readable[index] = rows, True
        if progress:
            progress.add(len(index))
    bad = [BadFile(str(paths[i]), failure_reason(paths[i], decode))
           for i in np.flatnonzero(~readable)]  # fmt: skip
    return bad, as_uint64(hashes) if hashing else None


def failure_reason(path: str, decode: Callable = decode_image) -> str:
    """Why a file cannot be decoded, in words: the decoder's message, or what the file is.

    Args:
        path: the file.
        decode: the decoder that failed on it.

    Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "notes.jpg")
    >>> _ = open(p, "w").write("<html>")
    >>> failure_reason(p)[:45]
    'cannot be decoded: Unknown image file format.'
    """
    try:
        decode(tf.io.read_file(path))
        reason = "cannot be decoded"
    except (tf.errors.OpError, ValueError) as err:
        reason = f"cannot be decoded: {tf_error_text(err)}"
    try:
        with open(path, "rb") as f:
            header = f.read(16)
        reason = (undecodable_reason(header) if decode is decode_image else None) or reason
    except OSError:
        pass
    return reason


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


def check_class_names(names: Sequence[str]) -> None:
    """Refuse class names that cannot be written one per line to `labels.txt` and read back.

    Args:
        names: the class names.

    Example:
    >>> check_class_names(["cat", " dog"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: Class name ' dog' cannot be stored one per line in labels.txt ...
    """
    for name in names:
        if (
            not isinstance(name, str)
            or not name.strip()
            or name != name.strip()
            or ("\n" in name or "\r" in name)
        ):
            raise ValueError(
                f"Class name {name!r} cannot be stored one per line in labels.txt and read "
                "back: class names must be non-empty, on one line, without leading or "
                "trailing spaces. Rename the class folder or label."
            )


def find_cross_class_duplicates(files: LabelledFiles) -> list[BadFile]:
    """Files whose bytes are those of an earlier file of another class (single-label files).

    The first copy keeps its class; the later ones are reported (an image has one class),
    which also catches a class folder that is a link to another class or to the data root.

    Args:
        files: single-label files.

    Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> for name in ("a.png", "b.png"):
    ...     _ = open(os.path.join(d, name), "wb").write(b"same bytes")
    >>> paths = [os.path.join(d, "a.png"), os.path.join(d, "b.png")]
    >>> f = LabelledFiles(paths, [0, 1], ["x", "y"])
    >>> find_cross_class_duplicates(f)[0].reason  # doctest: +ELLIPSIS
    "the same image as ...a.png (class 'x'); an image can have one class only"
    """
    if files.task != "single_label":
        return []
    first: dict[tuple[int, str], int] = {}
    duplicates = []
    for i, path in enumerate(files.paths):
        with open(path, "rb") as f:
            key = (os.fstat(f.fileno()).st_size, hashlib.sha1(f.read()).hexdigest())
        j = first.setdefault(key, i)
        if j != i and files.labels[j] != files.labels[i]:
            original = files.class_names[files.labels[j]]
            duplicates.append(
                BadFile(
                    path,
                    f"the same image as {files.paths[j]} (class {original!r}); an image can "
                    "have one class only",
                )
            )
    return duplicates
