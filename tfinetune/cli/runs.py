"""Whole runs over the public functions: train a folder into a run folder, evaluate an export.

A run folder holds `labels.txt`, `metrics.json`, `history.json`, `training_curves.png`,
`confusion_matrix.png`, `model.keras` and `saved_model/1/`, the SavedModel for TF Serving.
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
from tfinetune.data.datasets import ImageData, image_folder_datasets
from tfinetune.data.files import BadFile
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.pipeline import PipelineOptions
from tfinetune.evaluation.outputs import write_evaluation
from tfinetune.evaluation.predict import predict_dataset
from tfinetune.evaluation.report import ClassificationReport, classification_report
from tfinetune.models.backbones import BackboneSpec, get_spec
from tfinetune.models.classifier import build_classifier
from tfinetune.models.weights import check_weights_argument
from tfinetune.serving.export import export_version
from tfinetune.serving.inference import SAVED_MODEL_DIR, load_classifier
from tfinetune.sizes import to_size
from tfinetune.training.curves import plot_history
from tfinetune.training.fine_tuning import fine_tune
from tfinetune.training.freezing import freeze_to
from tfinetune.training.lr_finder import LRFinderResult, lr_find
from tfinetune.training.stages import FineTuneHistory


@dataclass
class RunResult:
    """What `train_run` made."""

    out_dir: Path
    model: keras.Model
    class_names: list[str]
    history: FineTuneHistory
    report: ClassificationReport | None
    bad_files: list[BadFile]
    seconds: float


def train_run(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    val_dir: str | os.PathLike | None = None,
    backbone: str | BackboneSpec = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    epochs: int = 6,
    freeze_epochs: int = 4,
    train_groups: int = 5,
    learning_rate: float = 1e-3,
    lr_mult: float = 10.0,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
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
    """Train a classifier on a folder of class sub-folders and leave a complete run folder.

    Fine-tunes in two stages (head, then the top `train_groups` groups), evaluates on the
    validation data, and writes metrics, plots, the Keras model and a checked SavedModel.

    Args:
        data_dir: the training folder (one sub-folder per class).
        out_dir: the run folder to write (new or empty unless `overwrite`).
        val_dir: a validation folder; otherwise `val_split` of `data_dir` is held out.
        backbone: a catalogue name or a `BackboneSpec`.
        weights: `"imagenet"`, a weights file, or None.
        image_size: the input size; defaults to the backbone's.
        epochs: epochs of the unfrozen stage.
        freeze_epochs: epochs of the head stage.
        train_groups: layer groups, from the top and counting the head, trained in the
            second stage.
        learning_rate: the head stage's learning rate.
        lr_mult: the spread of the second stage's rates: its lowest group learns `lr_mult`
            times more slowly than the head (see `fine_tune`).
        fine_tune_learning_rate: the head's rate in the second stage (`learning_rate / 2`).
        schedule: "constant", "warmup_cosine" or "one_cycle", in each stage.
        label_smoothing: smooth the targets by this much.
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
        data = image_folder_datasets(
            data_dir, val_dir, val_split=val_split, options=options, verbose=bool(verbose)
        )
        if verbose:
            _print_bad_files(data.bad_files)
        (out / "labels.txt").write_text("\n".join(data.class_names) + "\n")

        # === Model and training ===
        model = build_classifier(spec, len(data.class_names), weights=weights, image_size=size)
        history = fine_tune(
            model, data.train, data.val, epochs=epochs, freeze_epochs=freeze_epochs,
            train_groups=train_groups, learning_rate=learning_rate, lr_mult=lr_mult,
            fine_tune_learning_rate=fine_tune_learning_rate, schedule=schedule,
            label_smoothing=label_smoothing, ema_momentum=ema_momentum,
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
        model.save(out / "model.keras")
        # TF Serving's layout: version 1 of the run's model (`tfinetune export` adds more).
        sources = {"training_data": data_dir, "validation_data": val_dir}
        export_version(
            model, out / SAVED_MODEL_DIR, data.class_names, version=1, resize=resize,
            metadata={"backbone": spec.name, "normalization": spec.normalization,
                      **{k: str(Path(v).resolve()) for k, v in sources.items() if v}},
        )  # fmt: skip
    seconds = time.perf_counter() - started
    return RunResult(
        Path(out_dir), model, data.class_names, history, report, data.bad_files, seconds
    )


def _print_bad_files(bad_files: Sequence[BadFile]) -> None:
    if bad_files:
        print(f"Skipped {len(bad_files)} unreadable file(s):")
        for bad in bad_files:
            print(f"  {bad.path}: {bad.reason}")


def _evaluate_validation(
    model: keras.Model, data: ImageData, out: Path, seconds: float
) -> ClassificationReport:
    """Report on the validation data and write the evaluation files into the run folder."""
    labels, probs = predict_dataset(model, data.val)
    if labels.ndim == 2:  # one-hot, because the training augmentation mixes labels
        labels = labels.argmax(axis=1)
    report = classification_report(labels, probs, data.class_names)
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
) -> ClassificationReport:
    """Evaluate an exported model (or a run folder) on a folder of labelled images.

    Reads every file as stored on disk (a SavedModel decodes it in `serving_default`; with
    `tta`, `serve_images` averages each image and its mirror), and writes the files of
    `write_evaluation` to `out_dir`.

    Args:
        model_path: a run folder, a SavedModel (version or base folder), a `.keras` or a
            `.tflite` file.
        data_dir: a folder with one sub-folder per class (classes the model knows).
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
        files = scan_image_folder(data_dir, classifier.class_names, verbose=bool(verbose))
        probs = classifier.predict_files(
            files.paths, batch_size=batch_size, tta=tta, verbose=bool(verbose)
        )
        report = classification_report(files.labels, probs, classifier.class_names)
        with staged_folder(out_dir, "evaluation", overwrite) as out:
            write_evaluation(
                out, report, files.paths, files.bad_files, model=str(classifier.path), tta=tta
            )
    return report


def lr_find_run(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    backbone: str | BackboneSpec = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    train_groups: int = 1,
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    batch_size: int = 32,
    augment: str | None = "light",
    seed: int = 1337,
    overwrite: bool = False,
    verbose: int = 1,
) -> LRFinderResult:
    """Run the learning-rate finder on a folder; write `lr_finder.png` and `lr_finder.json`.

    The training images are repeated as needed to give `num_steps` batches.

    Args:
        data_dir: a folder of class sub-folders.
        out_dir: the folder to write.
        backbone: a catalogue name or a `BackboneSpec`.
        weights: `"imagenet"`, a weights file, or None.
        image_size: the input size; defaults to the backbone's.
        train_groups: how many layer groups, from the top, train (1: the head only).
        num_steps: batches in the sweep.
        start_lr: the first learning rate.
        end_lr: the last learning rate, unless the loss diverges first.
        batch_size: images per batch.
        augment: the augmentation policy.
        seed: seeds the data order, the head's initial weights and augmentation.
        overwrite: allow a non-empty `out_dir`.
        verbose: 0 silent, 1 a progress bar.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/data", ["ring", "cross"], 8, size=32)
    >>> r = lr_find_run(data, root + "/lr", backbone="convnet_tiny", weights=None,
    ...                 image_size=32, num_steps=20, batch_size=4, verbose=0)
    >>> sorted(p.name for p in Path(root, "lr").iterdir())
    ['.tfinetune', 'lr_finder.json', 'lr_finder.png']
    """
    spec = get_spec(backbone)
    size = to_size(spec.default_size if image_size is None else image_size)
    check_weights_argument(weights)
    check_output_folder(out_dir, overwrite, "lr-finder")
    keras.utils.set_random_seed(seed)
    data = image_folder_datasets(
        data_dir, image_size=size, batch_size=batch_size, val_split=0, seed=seed, augment=augment
    )
    model = build_classifier(spec, len(data.class_names), weights=weights, image_size=size)
    freeze_to(model, train_groups)
    result = lr_find(
        model,
        data.train.repeat(),
        num_steps=num_steps,
        start_lr=start_lr,
        end_lr=end_lr,
        verbose=verbose if verbose != 1 or sys.stdout.isatty() else 2,
    )
    with folder_lock(out_dir), staged_folder(out_dir, "lr-finder", overwrite) as out:
        result.plot(out / "lr_finder.png")
        (out / "lr_finder.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result
