"""What a run builds before it trains: the backbone for its data, its datasets, its model.

`train_run` and `lr_find_run` share these, so that the finder sweeps the model and
data the run would train.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras

from tfinetune.data.datasets import ImageData
from tfinetune.data.files import BadFile
from tfinetune.data.pipeline import PipelineOptions
from tfinetune.models.backbones import BackboneSpec
from tfinetune.models.weights import check_weights_argument
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.modalities import backbone_for, data_modality, load_signal_data, with_recipe
from tfinetune.runs.sources import build_run_model, load_run_data
from tfinetune.sizes import to_size
from tfinetune.training.distribution import replicas


def _weights_of(value: str) -> str | None:
    return None if value.lower() == "none" else value


def resolved_backbone(
    experiment: Experiment, verbose: int = 0
) -> tuple[Experiment, BackboneSpec, str | None]:
    """The experiment with its data's backbone and recipe (text and sound have their own),
    the backbone's spec and its weights argument, checked before any data is read.

    Args:
        experiment: the experiment, with `data.train`.
        verbose: print why a backbone or recipe was chosen for the data's kind.
    """
    if not experiment.data.train:
        raise ValueError("The experiment names no training data: set data.train (or --data).")
    d = experiment.data
    modality = data_modality(d.train, d.text_column, d.path_column)
    experiment, spec, backbone_note = backbone_for(experiment, modality)
    experiment, recipe_note = with_recipe(experiment, modality)
    for note in (backbone_note, recipe_note) if verbose else ():
        if note:
            print(note)
    weights = _weights_of(experiment.model.weights)
    check_weights_argument(weights)  # before the data scan: a bad file fails at once
    return experiment, spec, weights


def data_and_model(
    experiment: Experiment, spec: BackboneSpec, weights: str | None, verbose: int, strategy,
    scan_record: str | os.PathLike | None = None,
) -> tuple[ImageData, keras.Model]:  # fmt: skip
    """The run's datasets (bad files reported; global batches) and the model for them, made
    in the strategy's scope.

    Args:
        experiment: the resolved experiment (`resolved_backbone`).
        spec: its backbone.
        weights: the backbone's weights argument.
        verbose: report unreadable files.
        strategy: the `tf.distribute` strategy (its replicas multiply the batch).
        scan_record: a folder keeping what checking image files found, read again by a
            resumed run whose files did not change.
    """
    d, m = experiment.data, experiment.model
    batch = d.batch_size * replicas(strategy)
    model_options: dict = {"head": m}  # the model section is a HeadOptions
    size = to_size(d.image_size or (spec.default_size if spec.modality == "image" else 1))
    if spec.modality != "image":
        if d.exclude:
            raise ValueError(
                f"--exclude {d.exclude!r} leaves image files out; this run's data is "
                f"{spec.modality}. Remove the rows from your CSV or files from the folder instead."
            )
        data = load_signal_data(experiment, spec.modality, spec, batch, bool(verbose))
        model_options["clip_seconds"] = d.clip_seconds or None if spec.modality == "audio" else None
    else:
        model_options["mirror"] = experiment.evaluation.tta  # the model averages the mirrors itself
        augment = None if d.augment == "none" else d.augment
        options = PipelineOptions(size, batch, augment=augment, resize=d.resize,
                                  seed=experiment.seed)  # fmt: skip
        data = load_run_data(
            d.train, d.val or None, options, val_split=d.val_split, task=d.task or None,
            label_delim=d.label_delim or None, path_column=d.path_column,
            label_column=d.label_column, exclude=d.exclude or None, verbose=bool(verbose),
            check=d.scan, tfds_dir=d.tfds_dir or None, record=scan_record,
        )  # fmt: skip
    if verbose:
        _print_bad_files(data.bad_files)
        warn_leaks(data, d.train, d.val)
    with strategy.scope():
        model = build_run_model(spec, data, size, weights, **model_options)
    return data, model


def warn_leaks(data: ImageData, train: str, val: str | None) -> None:
    """Warn when held-out images are near-duplicates of training images, and say what to run.

    Args:
        data: the run's datasets (`ImageData.leaks`).
        train: the training data argument.
        val: the validation data argument, if any.
    """
    if not data.leaks:
        return
    shown = ", ".join(f"{held} ~ {source}" for source, held, _ in data.leaks[:3])
    more = f" and {len(data.leaks) - 3} more" if len(data.leaks) > 3 else ""
    command = f"tfinetune clean {train}" + (f" --val-data {val}" if val else "")
    print(
        f"Warning: {len(data.leaks)} validation or test image(s) are near-duplicates of training "
        f"images ({shown}{more}), so held-out numbers will read high. To list and leave them "
        f"out: {command}, then train with --exclude REPORT/issues.csv."
    )


def _print_bad_files(bad_files: Sequence[BadFile]) -> None:
    if bad_files:
        print(f"Skipped {len(bad_files)} unreadable file(s):")
        for bad in bad_files:
            print(f"  {bad.path}: {bad.reason}")
