"""Whole runs over the public functions: train data into a run folder, evaluate an export.

A run folder holds `labels.txt`, `metrics.json`, `history.json`, `training_curves.png`,
the evaluation's figures, `model.keras` and `saved_model/1/`, the SavedModel for TF
Serving (and, for multi-label runs, `thresholds.json`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfinetune.atomic import check_output_folder, folder_lock, staged_folder
from tfinetune.cli.run_data import build_run_model, is_csv, load_run_data, load_teacher
from tfinetune.data.datasets import ImageData
from tfinetune.data.files import BadFile
from tfinetune.data.pipeline import PipelineOptions
from tfinetune.evaluation.multilabel import MultiLabelReport
from tfinetune.evaluation.outputs import write_evaluation
from tfinetune.evaluation.predict import predict_dataset, report_for
from tfinetune.evaluation.regression import RegressionReport
from tfinetune.evaluation.report import ClassificationReport
from tfinetune.models.backbones import BackboneSpec, get_spec
from tfinetune.models.weights import check_weights_argument
from tfinetune.serving.export import THRESHOLDS_FILE, export_version
from tfinetune.serving.inference import SAVED_MODEL_DIR, labelled_files, load_classifier
from tfinetune.sizes import to_size
from tfinetune.training.curves import plot_history
from tfinetune.training.distillation import Distiller
from tfinetune.training.fine_tuning import fine_tune
from tfinetune.training.stages import FineTuneHistory


@dataclass
class RunResult:
    """What `train_run` made."""

    out_dir: Path
    model: keras.Model
    class_names: list[str]
    history: FineTuneHistory
    report: ClassificationReport | MultiLabelReport | RegressionReport | None
    bad_files: list[BadFile]
    seconds: float


def train_run(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    val_dir: str | os.PathLike | None = None,
    task: str | None = None,
    label_delim: str | None = None,
    path_column: str = "path",
    label_column: str = "label",
    backbone: str | BackboneSpec = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    pooling: str = "avg",
    hidden_units: Sequence[int] = (),
    head_dropout: float = 0.2,
    head_batch_norm: bool = False,
    teacher: str | os.PathLike | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    epochs: int = 6,
    freeze_epochs: int = 4,
    train_groups: int = 5,
    learning_rate: float = 1e-3,
    lr_mult: float = 10.0,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
    train_bn: bool = False,
    label_smoothing: float = 0.1,
    ema_momentum: float | None = 0.9,
    batch_size: int = 32,
    val_split: float = 0.2,
    augment: str | Sequence[str] | None = "light",
    resize: str = "stretch",
    balance_classes: bool = False,
    seed: int = 1337,
    deterministic_ops: bool = True,
    overwrite: bool = False,
    verbose: int = 1,
) -> RunResult:
    """Train on a folder or a CSV file and leave a complete run folder.

    Fine-tunes in two stages (head, then the top `train_groups` groups), evaluates on the
    validation data, and writes metrics, plots, the Keras model and a checked SavedModel.
    The task follows the data: a folder of class sub-folders gives one label per image; a
    CSV gives one label, several (`label_delim`, or `task="multi_label"`), or a number
    (`task="regression"`). A multi-label run chooses each class's threshold on the
    validation data and stores the thresholds with the export. With `teacher`, the model
    is distilled from a trained run's model (see `tfinetune.Distiller`).

    Args:
        data_dir: the training folder (one sub-folder per class) or CSV file.
        out_dir: the run folder to write (new or empty unless `overwrite`).
        val_dir: a validation folder or CSV; otherwise `val_split` of the data is held out.
        task: "single_label", "multi_label" or "regression" (see above).
        label_delim: a CSV's separator of several labels in one cell.
        path_column: a CSV's image path column.
        label_column: a CSV's label (or target) column.
        backbone: a catalogue name or a `BackboneSpec`.
        weights: `"imagenet"`, a weights file, or None.
        image_size: the input size; defaults to the backbone's.
        pooling: the head's pooling: "avg", "max" or "avgmax".
        hidden_units: sizes of hidden layers in the head.
        head_dropout: the dropout rate before each dense layer of the head.
        head_batch_norm: BatchNormalization after each hidden layer.
        teacher: a run folder (or `.keras` file) to distil from, with the data's classes.
        temperature: distillation: the softening temperature.
        alpha: distillation: the weight of the labels' loss (the teacher's is `1 - alpha`).
        epochs: epochs of the unfrozen stage.
        freeze_epochs: epochs of the head stage.
        train_groups: layer groups, from the top and counting the head, trained in the
            second stage.
        learning_rate: the head stage's learning rate.
        lr_mult: the spread of the second stage's rates: its lowest group learns `lr_mult`
            times more slowly than the head (see `fine_tune`).
        fine_tune_learning_rate: the head's rate in the second stage (`learning_rate / 2`).
        schedule: "constant", "warmup_cosine" or "one_cycle", in each stage.
        train_bn: train the BatchNormalization layers of unfrozen groups (for a backbone
            trained from scratch, or far from its pretraining data).
        label_smoothing: smooth the targets by this much (single-label only).
        ema_momentum: average the trained weights (see `fine_tune`); None for raw weights.
        batch_size: images per batch.
        val_split: the share held out for validation when there is no `val_dir`.
        augment: the training augmentation: a policy name or a list of layer names.
        resize: "stretch", "crop" or "pad", in training and in the exported model.
        balance_classes: weight the loss so that every class counts equally.
        seed: seeds the split, the initial weights, shuffling and augmentation.
        deterministic_ops: make TensorFlow ops deterministic, so the same seed on the same
            machine gives the same numbers. It is process-wide
            (`tf.config.experimental.enable_op_determinism`); it costs little on a CPU but can
            slow some GPU kernels.
        overwrite: allow a non-empty `out_dir`.
        verbose: 0 silent, 1 progress bars and a summary.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/data", ["ring", "cross"], 6, size=32)
    >>> r = train_run(data, root + "/run", backbone="convnet_tiny", weights=None,
    ...               image_size=32, epochs=1, freeze_epochs=1, verbose=0)
    >>> (r.out_dir / "saved_model" / "1" / "saved_model.pb").is_file()
    True
    """
    started = time.perf_counter()
    spec = get_spec(backbone)
    size = to_size(spec.default_size if image_size is None else image_size)
    check_weights_argument(weights)  # before the data scan: a bad file fails at once
    check_output_folder(out_dir, overwrite, "run")
    options = PipelineOptions(size, batch_size, augment=augment, resize=resize, seed=seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    with folder_lock(out_dir), staged_folder(out_dir, "run", overwrite) as out:
        # === Data ===
        data = load_run_data(
            data_dir, val_dir, options, val_split=val_split, task=task,
            label_delim=label_delim, path_column=path_column, label_column=label_column,
            verbose=bool(verbose),
        )  # fmt: skip
        if verbose:
            _print_bad_files(data.bad_files)
        (out / "labels.txt").write_text("\n".join(data.class_names) + "\n")

        # === Model and training ===
        model = build_run_model(
            spec, data, size, weights, pooling=pooling, hidden_units=hidden_units,
            dropout=head_dropout, batch_norm=head_batch_norm,
        )  # fmt: skip
        teacher_model = load_teacher(teacher, data.class_names) if teacher else None
        trained = Distiller(model, teacher_model, temperature, alpha) if teacher else model
        history = fine_tune(
            trained, data.train, data.val, epochs=epochs, freeze_epochs=freeze_epochs,
            train_groups=train_groups, learning_rate=learning_rate, lr_mult=lr_mult,
            fine_tune_learning_rate=fine_tune_learning_rate, schedule=schedule, train_bn=train_bn,
            label_smoothing=label_smoothing if data.task == "single_label" else 0.0,
            ema_momentum=ema_momentum,
            class_weight=data.class_weights() if balance_classes else None,
            # One line per epoch in logs; live progress bars in a terminal.
            verbose=verbose if verbose != 1 or sys.stdout.isatty() else 2,
        )  # fmt: skip
        (out / "history.json").write_text(json.dumps(history.to_dict(), indent=2))
        plot_history(history, out / "training_curves.png")

        # === Evaluation and export ===
        report = None
        if data.val is not None:
            report = _evaluate_validation(model, data, out, time.perf_counter() - started)
            if verbose:
                print(report)
        thresholds = getattr(report, "thresholds", None)  # a multi-label run's, chosen on val
        model.save(out / "model.keras")
        # TF Serving's layout: version 1 of the run's model (`tfinetune export` adds more).
        sources = {"training_data": data_dir, "validation_data": val_dir, "teacher": teacher}
        csv_columns = {"path_column": path_column, "label_column": label_column,
                       "label_delim": label_delim} if is_csv(data_dir) else None  # fmt: skip
        export_version(
            model, out / SAVED_MODEL_DIR, data.class_names, version=1, resize=resize,
            thresholds=thresholds, metadata=_export_facts(spec, sources, csv_columns),
        )  # fmt: skip
    seconds = time.perf_counter() - started
    return RunResult(
        Path(out_dir), model, data.class_names, history, report, data.bad_files, seconds
    )


def _export_facts(spec: BackboneSpec, sources: dict, csv_columns: dict | None) -> dict:
    """What an export records of its run: backbone, data and teacher paths, CSV columns."""
    facts = {"backbone": spec.name, "normalization": spec.normalization}
    facts.update({k: str(Path(v).resolve()) for k, v in sources.items() if v})
    if csv_columns:  # how to read the CSVs again, to evaluate and verify
        facts["csv"] = csv_columns
    return facts


def _print_bad_files(bad_files: Sequence[BadFile]) -> None:
    if bad_files:
        print(f"Skipped {len(bad_files)} unreadable file(s):")
        for bad in bad_files:
            print(f"  {bad.path}: {bad.reason}")


def _evaluate_validation(
    model: keras.Model, data: ImageData, out: Path, seconds: float
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """Report on the validation data and write the evaluation files into the run folder.

    A multi-label report's thresholds are each class's best F1 on this data: the thresholds
    the run then serves with, also written to `thresholds.json`.
    """
    labels, probs = predict_dataset(model, data.val)
    report = report_for(data.task, labels, probs, data.class_names)
    if data.task == "multi_label":
        (out / THRESHOLDS_FILE).write_text(json.dumps(report.thresholds.tolist()) + "\n")
    # A file that became unreadable after the scan would shift the order: no paths then.
    paths = data.val_files.paths if len(labels) == len(data.val_files) else None
    write_evaluation(out, report, paths, data.bad_files, seconds=seconds)
    return report


def evaluate_run(
    model_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    tta: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """Evaluate an exported model (or a run folder) on labelled images: a folder or a CSV.

    Reads every file as stored on disk (a SavedModel decodes it in `serving_default`; with
    `tta`, `serve_images` averages each image and its mirror), and writes the files of
    `write_evaluation` to `out_dir`.

    Args:
        model_path: a run folder, a SavedModel (version or base folder), a `.keras` or a
            `.tflite` file.
        data_dir: a folder with one sub-folder per class (classes the model knows), or a
            CSV file with the columns the run was trained from (any task).
        out_dir: where to write the metrics.
        batch_size: images per call.
        tta: test-time augmentation with horizontal flips.
        verbose: 0 silent, 1 progress bars.

    Example:
    >>> report = evaluate_run("runs/shapes", "more_shapes/", "runs/shapes/eval")  # doctest: +SKIP
    >>> report.accuracy  # doctest: +SKIP
    0.97
    """
    check_output_folder(out_dir, overwrite, "evaluation")
    classifier = load_classifier(model_path)
    with folder_lock(out_dir):
        contract = {**(classifier.contract or {}), "task": classifier.task}
        files = labelled_files(data_dir, classifier.class_names, contract)
        outputs = classifier.predict_files(
            files.paths, batch_size=batch_size, tta=tta, verbose=bool(verbose)
        )
        report = report_for(
            classifier.task, files.label_array(), outputs, classifier.class_names,
            classifier.thresholds,
        )  # fmt: skip
        with staged_folder(out_dir, "evaluation", overwrite) as out:
            write_evaluation(
                out, report, files.paths, files.bad_files, model=str(classifier.path), tta=tta
            )
    return report
