"""Listing a folder of class sub-folders: every image found by content, bad files reported."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tfinetune.data.files import (
    BadFile,
    LabelledFiles,
    check_class_names,
    find_cross_class_duplicates,
    scan_decoder,
)
from tfinetune.data.images import is_junk, sniff_format, undecodable_reason
from tfinetune.data.scan_record import checked

IMAGE_KINDS = "images (JPEG, PNG, GIF, BMP or WebP)"


def read_header(path: str | os.PathLike, size: int) -> tuple[bytes, str | None]:
    """A file's first `size` bytes, and the reason to skip it when it is unreadable or empty.

    Args:
        path: the file.
        size: how many bytes.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(size)
    except OSError as err:
        return b"", f"cannot be read: {err.strerror}"
    return header, None if header else "empty file (0 bytes)"


def _classify_file(path: Path) -> str | None:
    """None for an image candidate, else the reason to report the file as skipped."""
    header, reason = read_header(path, 16)
    if reason:
        return reason
    found = sniff_format(header)
    if found is None:
        return f"not an image: the content starts with {header[:8]!r}"
    return undecodable_reason(header) if found == "tiff" else None


def scan_image_folder(
    directory: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    verbose: int = 0,
    check: str = "auto",
    record: str | os.PathLike | None = None,
) -> LabelledFiles:
    """List a folder with one sub-folder per class; skip and report unreadable files.

    Files are found in nested folders too, and recognised by their content. Every other
    file is reported in `bad_files` with the reason (empty, not an image, a TIFF, fails to
    decode), except known junk (hidden files, `Thumbs.db`, `__MACOSX`), listed in `ignored`.

    Args:
        directory: the folder holding one sub-folder per class.
        class_names: the expected classes (for example a training set's), in label order.
        verify: decode every file once to find corrupt ones (and hash each image for
            finding near-duplicates, `tfinetune.data.hashes`).
        verbose: show a progress bar while verifying.
        check: how `verify` checks each file: "decode" (and hash), "header" (format,
            size, decompression bombs; a corrupt image is then found while training), or
            "auto": decode up to 20,000 files, headers above (`scan_decoder`).
        record: a folder that keeps what the check found; a later scan of the same,
            unchanged files reads it instead (`tfinetune.data.scan_record`).

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["circle", "square"], 3, size=32)
    >>> scan_image_folder(root).class_names
    ['circle', 'square']
    """
    root = check_root(directory)
    class_names = folder_class_names(root, class_names)
    check_class_names(class_names)
    files = list_class_files(root, class_names)
    if verify:
        decode = scan_decoder(check, len(files))
        files = checked(files, decode, verbose=verbose, duplicates=True, record=record)
    else:
        files = files.without(find_cross_class_duplicates(files))
    present = [name for name in class_names if (root / name).is_dir()]
    check_every_class_kept_files(files, present, root)
    return files


def check_root(directory: str | os.PathLike) -> Path:
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(
            f"Data folder not found: {str(root)!r}. Pass a folder with one sub-folder per class."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"Expected a folder with one sub-folder per class, got a file: {str(root)!r}."
        )
    return root


def folder_class_names(root: Path, expected: Sequence[str] | None) -> list[str]:
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_junk(p.name))
    if not found:
        raise ValueError(
            f"Data folder {str(root)!r} has no class sub-folders. Expected "
            f"{root}/<class name>/<image files>."
        )
    if expected is None:
        return found
    extra = sorted(set(found) - set(expected))
    if extra:
        raise ValueError(
            f"Data folder {str(root)!r} has classes the model does not know: {extra}. "
            f"Expected a subset of {list(expected)}."
        )
    return list(expected)


def list_class_files(
    root: Path, class_names: Sequence[str], classify=_classify_file, kinds: str = IMAGE_KINDS
) -> LabelledFiles:
    """Every candidate file under each class folder (nested too), the files to report, and
    the junk passed over. `classify(path)` gives None for a candidate, else the reason."""
    paths, labels, bad, ignored = [], [], [], []
    for label, name in enumerate(class_names):
        class_dir = root / name
        found = len(paths) + len(bad)
        for dirpath, dirnames, filenames in os.walk(class_dir) if class_dir.is_dir() else []:
            ignored += [os.path.join(dirpath, n) for n in sorted(dirnames + filenames)
                        if is_junk(n)]  # fmt: skip
            dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
            for path in [Path(dirpath) / n for n in sorted(filenames) if not is_junk(n)]:
                reason = classify(path)
                if reason is None:
                    paths.append(str(path))
                    labels.append(label)
                else:
                    bad.append(BadFile(str(path), reason))
        if len(paths) + len(bad) == found and class_dir.is_dir():
            raise ValueError(
                f"Class folder {str(class_dir)!r} has no files (only hidden or system files, "
                f"if any). Add {kinds} to it or remove the folder."
            )
    return LabelledFiles(paths, labels, list(class_names), bad, ignored)


def check_every_class_kept_files(
    files: LabelledFiles, present: Sequence[str], root, kind: str = "image"
) -> None:
    """A class whose every file was skipped is an error that names it and why."""
    counts = {name: 0 for name in present}
    for label in files.labels:
        counts[files.class_names[label]] = counts.get(files.class_names[label], 0) + 1
    empty = [name for name, count in counts.items() if count == 0]
    if not empty:
        return
    name = empty[0]
    skipped = [b for b in files.bad_files if Path(b.path).is_relative_to(root / name)]
    why = f" (for example {skipped[0].path}: {skipped[0].reason})" if skipped else ""
    raise ValueError(
        f"Class {name!r} in {str(root)!r} has no usable {kind}: all {len(skipped)} of its files "
        f"were skipped{why}. Fix or remove them, or remove the class folder."
    )
