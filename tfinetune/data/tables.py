"""Labelled files from a table: a CSV file, or `(path, label)` rows, single- or multi-label.

The result is the same `LabelledFiles` a folder gives; `tfinetune.files_datasets` turns it
into datasets.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tfinetune.data.files import (
    BadFile,
    LabelledFiles,
    check_class_names,
    scan_decoder,
)
from tfinetune.data.scan_record import checked


def files_from_rows(
    rows: Iterable[tuple[str | os.PathLike, object]],
    *,
    root: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    label_delim: str | None = None,
    task: str | None = None,
    target_name: str = "value",
    verify: bool = True,
    check: str = "auto",
    record: str | os.PathLike | None = None,
) -> LabelledFiles:
    """Labelled files from `(path, label)` rows; missing and unreadable files are reported.

    A label is a class name; for multi-label data a list of names or one string of names
    separated by `label_delim`; for regression a number. Classes are sorted by name unless
    `class_names` is given.

    Args:
        rows: `(path, label)` pairs.
        root: the folder relative paths are relative to.
        class_names: the classes, in label order.
        label_delim: the separator of several labels in one string (multi-label).
        task: "single_label", "multi_label" or "regression"; by default multi-label when
            `label_delim` is given or a label is a list, else single-label.
        target_name: regression: the target's name (the model's one output).
        verify: decode every file once to find corrupt ones.
        check: how `verify` checks: "auto", "decode" or "header" (see `scan_decoder`).
        record: a folder that keeps what the check found, for a later read of the same,
            unchanged files (`tfinetune.data.scan_record`).

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=16)
    >>> files = files_from_rows([("ring/ring_0000.png", "a b"), ("ring/ring_0001.png", "b")],
    ...                         root=root, label_delim=" ")
    >>> files.class_names, files.labels
    (['a', 'b'], [(0, 1), (1,)])
    """
    rows = [_check_row(row, number) for number, row in enumerate(rows, start=1)]

    def full(path) -> str:
        relative = root is not None and not Path(path).is_absolute()
        return str(Path(root, path) if relative else path)

    paths = [full(path) for path, _ in rows]
    labels, class_names, _ = parse_labels(
        [p for p, _ in rows],
        [label for _, label in rows],
        class_names=class_names,
        label_delim=label_delim,
        task=task,
        target_name=target_name,
    )
    bad = [BadFile(p, "file not found") for p in paths if not os.path.isfile(p)]
    missing = {b.path for b in bad}
    keep = [i for i, path in enumerate(paths) if path not in missing]
    files = LabelledFiles([paths[i] for i in keep], [labels[i] for i in keep], class_names, bad)
    if verify and len(files):  # with the hashes, for finding leaks between splits
        files = checked(files, scan_decoder(check, len(files)), record=record)
    if not len(files):
        raise ValueError("None of the listed images can be read.")
    return files


def parse_labels(
    keys: Sequence,
    raw: Sequence,
    *,
    class_names: Sequence[str] | None = None,
    label_delim: str | None = None,
    task: str | None = None,
    target_name: str = "value",
) -> tuple[list, list[str], str]:
    """Class indices (or index tuples, or numbers) for raw labels, the classes, and the task.

    Args:
        keys: what names each row in error messages (a path, a text).
        raw: one label per row: a class name, a list of names or one string of names
            separated by `label_delim` (multi-label), or a number (regression).
        class_names: the classes, in label order (default: the names found, sorted).
        label_delim: the separator of several labels in one string.
        task: "single_label", "multi_label" or "regression"; by default multi-label when
            `label_delim` is given or a label is a list, else single-label.
        target_name: regression: the target's name (the model's one output).

    Example:
    >>> parse_labels(["a.txt", "b.txt"], ["x y", "y"], label_delim=" ")
    ([(0, 1), (1,)], ['x', 'y'], 'multi_label')
    """
    if task is None:
        listed = any(isinstance(label, (list, tuple)) for label in raw)
        task = "multi_label" if label_delim is not None or listed else "single_label"
    if task not in ("single_label", "multi_label", "regression"):
        raise ValueError(f"Unknown task {task!r}: use single_label, multi_label or regression.")
    rows = list(zip(keys, raw, strict=True))
    if task == "regression":
        return (
            [_number(label, n, key) for n, (key, label) in enumerate(rows, 1)],
            [target_name],
            task,
        )
    parsed = [(key, _names(label, label_delim)) for key, label in rows]
    if task == "single_label":
        _check_one_label_each(rows, parsed, label_delim)
    for number, (key, names) in enumerate(parsed, 1):
        try:
            check_class_names(names)
        except ValueError as err:  # labels.txt holds one class per line: say which row
            raise ValueError(f"Row {number} ({str(key)[:200]!r}): {err}") from None
    found = sorted({name for _, names in parsed for name in names})
    class_names = found if class_names is None else list(class_names)
    _check_known(rows, parsed, class_names)
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for _, names in parsed:
        ids = tuple(sorted(index[n] for n in names))
        labels.append(ids if task == "multi_label" else ids[0])
    return labels, class_names, task


def _check_row(row, number: int) -> tuple:
    if len(row) != 2:
        raise ValueError(f"Row {number} should be (path, label); it is {row!r}.")
    return tuple(row)


def _names(label, label_delim: str | None) -> list[str]:
    if isinstance(label, (list, tuple)):
        return [str(x) for x in label]
    if label_delim is not None:
        return [x for x in str(label).split(label_delim) if x]
    return [str(label)]


def _number(label, number: int, path) -> float:
    try:
        value = float(label)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value):
        raise ValueError(
            f"Row {number} ({str(path)!r}): the regression target {label!r} is not a finite "
            "number. Fix the value or leave the row out."
        )
    return value


def _check_one_label_each(rows, parsed, label_delim: str | None) -> None:
    for number, ((path, label), (_, names)) in enumerate(zip(rows, parsed, strict=True), 1):
        if len(names) != 1:
            raise ValueError(
                f"Row {number} ({str(path)!r}) has {len(names)} labels ({label!r}) but the "
                f"task is single-label. Use the multi-label task (task='multi_label') or "
                "give each row one label."
            )


def _check_known(rows, parsed, class_names: Sequence[str]) -> None:
    known = set(class_names)
    for number, ((path, _), (_, names)) in enumerate(zip(rows, parsed, strict=True), 1):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(
                f"Row {number} ({str(path)!r}): the label(s) {unknown} are not among the "
                f"classes {list(class_names)}. Fix the row or add the class."
            )


def read_csv_rows(
    csv_path: str | os.PathLike, columns: dict[str, str]
) -> list[tuple[int, dict[str, str]]]:
    """A UTF-8 CSV's rows (with their line numbers), after checking its header row.

    A byte-order mark (Excel's "CSV UTF-8") is dropped; another encoding is a clear error.

    Args:
        csv_path: the CSV file.
        columns: the columns that must be there, by the argument that names them (the
            error says which argument chooses another).

    Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_bytes(b"\\xef\\xbb\\xbfpath,label\\na.png,cat\\n")
    >>> read_csv_rows(path, {"path_column": "path"})
    [(2, {'path': 'a.png', 'label': 'cat'})]
    """
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {str(path)!r}.")
    reader = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            found = reader.fieldnames or []
            missing = [c for c in columns.values() if c not in found]
            if missing:
                choose = " and ".join(f"{a}=" for a in columns)
                raise ValueError(
                    f"{str(path)!r} has no column {missing[0]!r}; its header row names "
                    f"{found}. Name the columns with {choose}."
                )
            return [(reader.line_num, row) for row in reader]
    except csv.Error as err:  # a field over csv's size limit, a malformed quote
        line = reader.line_num + 1 if reader is not None else 1  # the line being read
        raise ValueError(
            f"{str(path)!r}, line {line}: {err}. Fix that line (a cell of more than "
            f"{csv.field_size_limit()} characters is refused), or leave it out."
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}). Save it as "
            "UTF-8 (in a spreadsheet: CSV UTF-8)."
        ) from err


def read_csv_files(
    csv_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    path_column: str = "path",
    label_column: str = "label",
    label_delim: str | None = None,
    class_names: Sequence[str] | None = None,
    task: str | None = None,
    check: str = "auto",
    record: str | os.PathLike | None = None,
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
        task: "single_label", "multi_label" or "regression" (a number per row); by default
            multi-label when `label_delim` is given, else single-label.
        check: how each file is checked: "auto", "decode" or "header" (`scan_decoder`).
        record: a folder that keeps what the check found (`tfinetune.data.scan_record`).

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring"], 2, size=16)
    >>> _ = (root / "labels.csv").write_text("path,label\\nring/ring_0000.png,x\\n")
    >>> read_csv_files(root / "labels.csv").labels
    [0]
    """
    csv_path = Path(csv_path)
    table = read_csv_rows(csv_path, {"path_column": path_column, "label_column": label_column})
    rows = [(r[path_column], r[label_column]) for _, r in table]
    return files_from_rows(
        rows,
        root=csv_path.parent if root is None else root,
        class_names=class_names,
        label_delim=label_delim,
        task=task,
        target_name=label_column,
        check=check,
        record=record,
    )
