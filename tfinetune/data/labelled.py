"""The labelled examples to check or score a model on: a folder of class sub-folders (images
or sound files), or a CSV file read with the columns a run was trained with."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tfinetune.data.audio import scan_audio_folder
from tfinetune.data.files import LabelledFiles
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.tables import read_csv_files
from tfinetune.data.text import LabelledTexts, read_text_csv


def is_csv(path: str | os.PathLike) -> bool:
    """Whether a data argument names a CSV file rather than a folder.

    Args:
        path: the `--data` (or validation) argument.

    Example:
    >>> is_csv("labels.csv"), is_csv("photos/")
    (True, False)
    """
    return Path(path).suffix.lower() == ".csv"


def labelled_files(
    data: str | os.PathLike, class_names: Sequence[str], contract: dict
) -> LabelledFiles | LabelledTexts:
    """The labelled examples to check a model on: a folder of class sub-folders (images or
    sound files), or a CSV file read with the columns the run was trained with (its
    contract's `csv` entry; a text model's texts).

    Args:
        data: a folder or a `.csv` file.
        class_names: the model's classes (regression: the target's name).
        contract: the export's `preprocessing.json`.

    Example:
    >>> labelled_files("/no/such/folder", ["a"], {})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ...
    """
    task = contract.get("task", "single_label")
    columns = contract.get("csv", {})
    if contract.get("modality") == "text":
        return read_text_csv(
            data,
            text_column=columns.get("text_column", "text"),
            label_column=columns.get("label_column", "label"),
            label_delim=columns.get("label_delim") or None,
            class_names=None if task == "regression" else class_names,
            task=task,
        )
    if contract.get("modality") == "audio":
        return scan_audio_folder(data, class_names)
    if not is_csv(data):
        if task != "single_label":
            raise ValueError(
                f"A {task} model is checked on a CSV file of images and labels, not on the "
                f"folder {str(data)!r}: pass --data FILE.csv."
            )
        return scan_image_folder(data, class_names, verbose=0)
    return read_csv_files(
        data,
        path_column=columns.get("path_column", "path"),
        label_column=columns.get("label_column", "label"),
        label_delim=columns.get("label_delim") or (" " if task == "multi_label" else None),
        class_names=None if task == "regression" else class_names,
        task=task,
    )
