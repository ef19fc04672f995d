"""The learning-rate finder over a run's data and model, its figure and numbers in a folder.

`lr_find_run` takes what `train_run` takes (an experiment, a file, or data with train's
flags), so that the sweep runs on the model and data the run will train.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import keras

from tfinetune.atomic import check_output_folder, folder_lock, staged_folder
from tfinetune.runs.experiment import Experiment, load_config
from tfinetune.runs.overrides import apply_flags
from tfinetune.training.freezing import freeze_to
from tfinetune.training.lr_finder import LRFinderResult, lr_find


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


def lr_find_run(
    experiment: Experiment | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    train_groups: int | str = 1,
    num_steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    overwrite: bool = False,
    verbose: int = 1,
    **flags: Any,
) -> LRFinderResult:
    """Run the learning-rate finder on a run's data and model; write `lr_finder.png` and
    `lr_finder.json`.

    The data and model are the ones `train_run` would build from the same experiment (a
    folder or a CSV, any task, its head and augmentation); the training part of the data is
    repeated as needed to give `num_steps` batches.

    Args:
        experiment: an `Experiment`, an experiment file (`.toml`), or the training data (a
            folder of class sub-folders or a CSV), with `flags` for the rest.
        out_dir: the folder for `lr_finder.png` and `lr_finder.json`.
        train_groups: how many layer groups, from the top, train (1: the head only).
        num_steps: batches in the sweep.
        start_lr: the first learning rate.
        end_lr: the last learning rate, unless the loss diverges first.
        overwrite: allow a non-empty `out_dir`.
        verbose: 0 silent, 1 progress.
        **flags: `tfinetune train`'s flags by name (`backbone`, `weights`, `image_size`,
            `batch_size`, `augment`, `seed`, ...; see `apply_flags`), changing the experiment.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/data", ["ring", "cross"], 8, size=32)
    >>> r = lr_find_run(data, root + "/lr", backbone="convnet_tiny", weights=None,
    ...                 image_size=32, batch_size=4, num_steps=20, verbose=0)
    >>> len(r.losses) <= 20, sorted(p.name for p in Path(root, "lr").iterdir())
    (True, ['.tfinetune', 'lr_finder.json', 'lr_finder.png'])
    """
    experiment = _experiment_of(experiment, flags)
    from tfinetune.runs.build import data_and_model, resolved_backbone
    from tfinetune.runs.checks import check_values

    check_values(experiment)
    check_output_folder(out_dir, overwrite, "lr-finder")
    keras.utils.set_random_seed(experiment.seed)
    experiment, spec, weights = resolved_backbone(experiment)
    data, model = data_and_model(experiment, spec, weights, verbose, tf_default_scope())
    sweep = {"num_steps": num_steps, "start_lr": start_lr, "end_lr": end_lr}
    return _sweep_and_write(model, data.train, train_groups, out_dir, overwrite, verbose, sweep)


def _experiment_of(source: Experiment | str | os.PathLike, flags: dict) -> Experiment:
    """An experiment, from itself, a `.toml` file, or training data, with `flags` applied
    (`weights=None` is Python's "no weights", the flag's `none`)."""
    if "weights" in flags and flags["weights"] is None:
        flags = {**flags, "weights": "none"}
    if isinstance(source, Experiment):
        experiment = source
    elif Path(source).suffix == ".toml":
        experiment = load_config(source)
    else:
        experiment, flags = Experiment(), {"data": str(source), **flags}
    return apply_flags(experiment, flags) if flags else experiment


def tf_default_scope():
    """TensorFlow's default strategy (one device): `data_and_model` builds in its scope."""
    import tensorflow as tf

    return tf.distribute.get_strategy()
