"""`lr_find_run`: the learning-rate finder over a folder, its figure and numbers in a folder."""

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
