"""What a run trains: data from a folder or a CSV file (one label, several, or a number per
image), the model that suits it, and, for distillation, a teacher with the data's classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from tfinetune.data.datasets import ImageData, files_datasets
from tfinetune.data.exclude import read_exclusions
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.labelled import is_csv
from tfinetune.data.pipeline import PipelineOptions
from tfinetune.data.shards import (
    TFDS_PREFIX,
    is_record_source,
    shard_datasets,
    tfds_run_datasets,
)
from tfinetune.data.tables import read_csv_files
from tfinetune.models.classifier import build_classifier
from tfinetune.models.saving import load_keras_model
from tfinetune.models.specs import BackboneSpec
from tfinetune.serving.export import read_contract
from tfinetune.serving.inference import find_saved_model, keras_contract


def load_run_data(
    data: str | os.PathLike,
    val: str | os.PathLike | None,
    options: PipelineOptions,
    *,
    val_split: float = 0.2,
    task: str | None = None,
    label_delim: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    exclude: str | os.PathLike | None = None,
    verbose: int = 1,
    check: str = "auto",
    tfds_dir: str | os.PathLike | None = None,
    record: str | os.PathLike | None = None,
) -> ImageData:
    """Training and validation datasets from folders of class sub-folders, CSV files,
    TFRecord shards or `tfds:NAME` (`tfinetune.data.shards`).

    A CSV has a header row, a path column (relative to the CSV's folder) and a label column:
    a class name, several separated by `label_delim` (multi-label), or a number (regression).

    Args:
        data: the training folder or CSV file.
        val: a validation folder or CSV file; otherwise `val_split` of `data` is held out.
        options: the pipeline options.
        val_split: the share held out when there is no `val`.
        task: "single_label", "multi_label" or "regression" (CSV only); by default
            multi-label when `label_delim` is given, else single-label.
        label_delim: the separator of several labels in one cell (default for a multi-label
            task: a space).
        path_column: the CSV's path column.
        label_column: the CSV's label (or target) column.
        exclude: a CSV of files to leave out (`tfinetune.data.exclude.read_exclusions`);
            they are named in `ImageData.excluded`, never deleted.
        verbose: show progress while checking files.
        check: how files are checked: "auto", "decode" or "header"
            (`tfinetune.data.files.scan_decoder`).
        tfds_dir: where `tfds:NAME` data is prepared.
        record: a folder that keeps what checking the files found, so that a resumed run
            reads unchanged files' outcome there (`tfinetune.data.scan_record`).

    Example:
    >>> load_run_data("no/such/folder", None, PipelineOptions(32, 4))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ...
    """
    if task == "multi_label" and label_delim is None:
        label_delim = " "
    if is_record_source(data):
        return _record_data(data, val, options, val_split, task, exclude, tfds_dir, verbose)
    if not is_csv(data):
        if task not in (None, "single_label") or (val is not None and is_csv(val)):
            raise ValueError(
                f"A folder of class sub-folders ({str(data)!r}) gives one label per image; for "
                f"the {task or 'given'} task, pass CSV files (--csv, --val-csv)."
            )
        scan = {"verbose": verbose, "check": check, "record": record}
        train_files = scan_image_folder(data, **scan)
        val_files = scan_image_folder(val, train_files.class_names, **scan) if val else None
    else:
        columns = {"path_column": path_column, "label_column": label_column, "check": check,
                   "record": record}  # fmt: skip
        train_files = read_csv_files(data, label_delim=label_delim, task=task, **columns)
        val_files = None
        if val is not None:
            if not is_csv(val):
                raise ValueError(
                    f"With a training CSV, give the validation data as a CSV too: {str(val)!r}."
                )
            val_files = read_csv_files(
                val,
                label_delim=label_delim,
                task=train_files.task,
                class_names=None if train_files.task == "regression" else train_files.class_names,
                **columns,
            )
    if exclude:
        reasons = read_exclusions(exclude)
        train_files = train_files.excluding(reasons)
        val_files = val_files.excluding(reasons) if val_files is not None else None
    return files_datasets(train_files, val_files, val_split=val_split, options=options)


def _record_data(data, val, options, val_split, task, exclude, tfds_dir, verbose) -> ImageData:
    """Shards or a TFDS dataset: single-label images, nothing left out by a list."""
    if task not in (None, "single_label") or exclude:
        what = f"--exclude {str(exclude)!r}" if exclude else f"the {task} task"
        raise ValueError(
            f"{what} needs image files; {str(data)!r} holds records (shards or TFDS), which "
            "give one label per image. Train from the folder or CSV instead."
        )
    if str(data).startswith(TFDS_PREFIX):
        return tfds_run_datasets(str(data), tfds_dir or None, options, val_split, verbose)
    return shard_datasets(str(data), str(val) if val else None, options, verbose)


def record_sample(data: str, contract: dict, folder: Path, limit: int = 64) -> Path:
    """A class folder of up to `limit` validation records of a shards or TFDS run, to verify
    its exports on (the records of its training data where it has no validation split).

    Args:
        data: what the run recorded as its data: a shard glob, a `convert` folder or
            `tfds:NAME`.
        contract: the run's preprocessing contract (`tfds_dir` where the run had one).
        folder: where the images are written.
        limit: the most records.
    """
    options = PipelineOptions(tuple(contract.get("image_size", (224, 224))), 32)
    found = _record_data(data, None, options, 0.2, None, None, contract.get("tfds_dir"), 0)
    (found.records.get("val") or found.records["train"]).sample(folder, limit)
    return folder


def load_run_model(run: str | os.PathLike) -> tuple[keras.Model, list[str], dict, Path]:
    """A run's Keras model, class names, preprocessing contract and model file.

    Args:
        run: a `tfinetune train` run folder or its `model.keras`.

    Example:
    >>> load_run_model("no/such/run")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ...
    """
    run = Path(run)
    model_file = run if run.suffix == ".keras" else run / "model.keras"
    if not model_file.is_file():
        raise FileNotFoundError(
            f"{str(run)!r} holds no model.keras: pass a run folder of `tfinetune train` (or its "
            "model.keras file)."
        )
    model = load_keras_model(model_file)
    try:
        class_names, contract = read_contract(find_saved_model(model_file.parent))
    except FileNotFoundError:  # a bare .keras file: what the model carries
        class_names, contract = keras_contract(model_file, model)
    for key in RUN_RELATIVE:  # recorded relative to the run folder (absolute before 0.1)
        if contract.get(key) and not contract[key].startswith(TFDS_PREFIX):
            contract[key] = str((model_file.parent / contract[key]).resolve())
    return model, class_names, contract, model_file


# The paths a run's export records relative to the run folder.
RUN_RELATIVE = ("training_data", "validation_data", "teacher", "tfds_dir")


def load_teacher(path: str | os.PathLike, class_names: list[str]) -> keras.Model:
    """A teacher for distillation: a run's model, whose classes are the data's, in order.

    Args:
        path: a `tfinetune train` run folder or its `model.keras`.
        class_names: the student's classes.

    Example:
    >>> load_teacher("no/such/run", ["a", "b"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: ...
    """
    teacher, teacher_classes, _, _ = load_run_model(path)
    if teacher_classes != list(class_names):
        raise ValueError(
            f"The teacher {str(path)!r} knows the classes {teacher_classes} but the data has "
            f"{list(class_names)}: distil from a teacher trained on the same classes."
        )
    return teacher


def build_run_model(
    spec: BackboneSpec,
    data: ImageData,
    image_size: tuple[int, int],
    weights: str | os.PathLike | None,
    **options: Any,
) -> keras.Model:
    """The model for a run's data: its task, its classes, and a regression target's scale.

    Args:
        spec: the backbone.
        data: the run's datasets (`load_run_data`).
        image_size: `(height, width)`.
        weights: `"imagenet"`, a weights file, or None.
        **options: more of `build_classifier`'s arguments (`head`, `mirror`, ...).

    Example:
    >>> import numpy as np
    >>> from tfinetune.data.datasets import array_datasets
    >>> from tfinetune.models.backbones import get_spec
    >>> d = array_datasets(np.zeros((8, 8, 8), "uint8"), np.linspace(2, 4, 8), ["y"],
    ...                    val_split=0, image_size=16)
    >>> m = build_run_model(get_spec("convnet_tiny"), d, (16, 16), None)
    >>> m.get_layer("head_target_scaling").mean
    3.0
    """
    scale = {}
    if data.task == "regression":
        targets = data.train_labels
        scale = {"target_mean": float(targets.mean()), "target_std": float(targets.std()) or 1.0}
    return build_classifier(
        spec, len(data.class_names), weights=weights, image_size=image_size, task=data.task,
        **scale, **options,
    )  # fmt: skip
