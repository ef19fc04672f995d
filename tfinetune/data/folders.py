"""Listing a folder of class sub-folders: every image found by content, bad files reported."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tfinetune.data.files import BadFile, LabelledFiles, find_bad_files
from tfinetune.data.images import IMAGE_EXTENSIONS, sniff_format


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
    >>> from tfinetune.data.synthetic import write_shapes_folder
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
