"""Labelled files from a table: a CSV file, or `(path, label)` rows, single- or multi-label.

The result is the same `LabelledFiles` a folder gives; `tfinetune.files_datasets` turns it
into datasets.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tfinetune.data.files import BadFile, LabelledFiles, find_bad_files


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
    >>> from tfinetune.data.synthetic import write_shapes_folder
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
    >>> from tfinetune.data.synthetic import write_shapes_folder
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
