"""The learning-rate finder over a run's data and model, its figure and numbers in a folder.

`lr_find_experiment` takes an experiment (what `tfinetune lr-find` builds from `train`'s
flags, a file and `--set`); `lr_find_run` a folder of class sub-folders and a few options.
"""

from __future__ import annotations

import json
import os
import sys

import keras

from tfinetune.atomic import check_output_folder, folder_lock, staged_folder
from tfinetune.data.datasets import image_folder_datasets
from tfinetune.models.backbones import BackboneSpec, get_spec
from tfinetune.models.classifier import build_classifier
from tfinetune.models.weights import check_weights_argument
from tfinetune.runs.experiment import Experiment
from tfinetune.sizes import to_size
from tfinetune.training.freezing import freeze_to
from tfinetune.training.lr_finder import LRFinderResult, lr_find


def lr_find_run(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    backbone: str | BackboneSpec = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    train_groups: int | str = 1,
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
    >>> from pathlib import Path
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
    sweep = {"num_steps": num_steps, "start_lr": start_lr, "end_lr": end_lr}
    return _sweep_and_write(model, data.train, train_groups, out_dir, overwrite, verbose, sweep)


def _sweep_and_write(
    model: keras.Model, train, train_groups: int | str, out_dir, overwrite: bool, verbose: int,
    sweep: dict,
) -> LRFinderResult:  # fmt: skip
    """Sweep with the top `train_groups` unfrozen; write the figure and the numbers."""
    freeze_to(model, train_groups)
    verbose = verbose if verbose != 1 or sys.stdout.isatty() else 2
    result = lr_find(model, train.repeat(), verbose=verbose, **sweep)
    with folder_lock(out_dir), staged_folder(out_dir, "lr-finder", overwrite) as out:
        result.plot(out / "lr_finder.png")
        (out / "lr_finder.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def lr_find_experiment(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    *,
    train_groups: int | str = 1,
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    overwrite: bool = False,
    verbose: int = 1,
) -> LRFinderResult:
    """Run the learning-rate finder on an experiment's data and model (as `train_run` builds
    them: a folder or a CSV, any task, its head and augmentation).

    Args:
        experiment: the experiment (its stages are not used).
        out_dir: the folder for `lr_finder.png` and `lr_finder.json`.
        train_groups: how many layer groups, from the top, train (1: the head only).
        num_steps: batches in the sweep.
        start_lr: the first learning rate.
        end_lr: the last learning rate, unless the loss diverges first.
        overwrite: allow a non-empty `out_dir`.
        verbose: 0 silent, 1 progress.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> from tfinetune.runs.overrides import apply_flags
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/data", ["ring", "cross"], 8, size=32)
    >>> e = apply_flags(Experiment(), {"data": str(data), "backbone": "convnet_tiny",
    ...                                "weights": "none", "image_size": 32, "batch_size": 4})
    >>> r = lr_find_experiment(e, root + "/lr", num_steps=20, verbose=0)
    >>> len(r.losses) <= 20
    True
    """
    from tfinetune.runs.build import data_and_model, resolved_backbone
    from tfinetune.runs.checks import check_values

    check_values(experiment)
    check_output_folder(out_dir, overwrite, "lr-finder")
    keras.utils.set_random_seed(experiment.seed)
    experiment, spec, weights = resolved_backbone(experiment)
    data, model = data_and_model(experiment, spec, weights, verbose, tf_default_scope())
    sweep = {"num_steps": num_steps, "start_lr": start_lr, "end_lr": end_lr}
    return _sweep_and_write(model, data.train, train_groups, out_dir, overwrite, verbose, sweep)


def tf_default_scope():
    """TensorFlow's default strategy (one device): `data_and_model` builds in its scope."""
    import tensorflow as tf

    return tf.distribute.get_strategy()
