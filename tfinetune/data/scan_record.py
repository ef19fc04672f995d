"""What a scan found, kept in the run folder, so that a resumed run does not check again.

Checking files (a decode or a header read of each, and for folders a content digest to find
one image in two classes) is the slow part of reading a large folder. `checked` keeps its
outcome, the files skipped with their reasons and the images' hashes, in a record file
beside the run, with each file's size and modification time; a later call with the same
files, unchanged, reads the record instead of the files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfinetune.atomic import replace_into
from tfinetune.data.files import BadFile, LabelledFiles, check_files, find_cross_class_duplicates


def file_stamps(paths: list[str]) -> np.ndarray:
    """`[size, modification time in ns]` per file (int64, `-1` for a missing file).

    Args:
        paths: the files.

    Example:
    >>> file_stamps(["/no/such/file"]).tolist()
    [[-1, -1]]
    """
    stamps = np.full((len(paths), 2), -1, np.int64)
    for i, path in enumerate(paths):
        try:
            found = os.stat(path)
        except OSError:
            continue
        stamps[i] = found.st_size, found.st_mtime_ns
    return stamps


def _record_file(folder: Path, files: LabelledFiles, decode: Callable) -> Path:
    key = hashlib.sha1(decode.__name__.encode())
    for path, label in zip(files.paths, files.labels, strict=True):
        key.update(f"{path}\0{label}\n".encode())
    return folder / f"scan-{key.hexdigest()[:16]}.npz"


def checked(
    files: LabelledFiles,
    decode: Callable,
    *,
    verbose: int = 0,
    duplicates: bool = False,
    record: str | os.PathLike | None = None,
) -> LabelledFiles:
    """`files` less those that fail `decode` (and, with `duplicates`, the same image filed in
    two classes), which join `bad_files`; the images' hashes when `decode` makes them.

    Args:
        files: the candidate files.
        decode: what checks each file (`tfinetune.data.files.scan_decoder`).
        verbose: show a progress bar while checking.
        duplicates: also report an image whose bytes are an earlier one's of another class.
        record: a folder for the record of this check: when it holds one for these files,
            each unchanged in size and modification time, no file is read.

    Example:
    >>> import tempfile
    >>> from tfinetune.data.images import decode_image
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=16)
    >>> f = LabelledFiles(sorted(str(p) for p in root.rglob("*.png")), [0, 0], ["ring"])
    >>> record = tempfile.mkdtemp()
    >>> len(checked(f, decode_image, record=record)), len(list(Path(record).glob("*.npz")))
    (2, 1)
    """
    target = None if record is None else _record_file(Path(record), files, decode)
    stamps = file_stamps(files.paths) if target is not None else None
    if target is not None and target.is_file():
        with np.load(target, allow_pickle=False) as stored:
            if np.array_equal(stored["stamps"], stamps):
                bad = [BadFile(files.paths[i], str(r))
                       for i, r in zip(stored["bad"], stored["reasons"], strict=True)]  # fmt: skip
                hashes = stored["hashes"] if bool(stored["hashed"]) else None
                return _kept(files, bad, hashes)
    bad, hashes = check_files(files.paths, verbose=verbose, decode=decode)
    if duplicates:
        readable = _kept(files, bad, None)
        bad = bad + find_cross_class_duplicates(readable)
    if target is not None:
        _save(target, files, bad, hashes, stamps)
    return _kept(files, bad, hashes)


def _kept(files: LabelledFiles, bad: list[BadFile], hashes: np.ndarray | None) -> LabelledFiles:
    hashed = LabelledFiles(files.paths, files.labels, files.class_names, files.bad_files,
                           files.ignored, hashes, files.excluded)  # fmt: skip
    return hashed.without(bad)


def _save(target: Path, files: LabelledFiles, bad, hashes, stamps) -> None:
    position = {path: i for i, path in enumerate(files.paths)}
    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "stamps": stamps,
        "bad": np.array([position[b.path] for b in bad], np.int64),
        "reasons": np.array([b.reason for b in bad], dtype=str),
        "hashes": hashes if hashes is not None else np.zeros(0, np.uint64),
        "hashed": np.array(hashes is not None),
    }
    replace_into(target, lambda t: np.savez(t, **arrays), suffix=".npz")
