"""TFDS datasets prepared in a local `data_dir`, through the same pipeline as files.

TFDS is imported only when this is called: importing it costs seconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from tfinetune.data.datasets import ImageData, build_image_data
from tfinetune.data.pipeline import AUTOTUNE, PipelineOptions


def tfds_datasets(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    splits: Sequence[str] = ("train", "validation"),
    image_key: str = "image",
    label_key: str = "label",
    download: bool = False,
    options: PipelineOptions | None = None,
    **pipeline: Any,
) -> ImageData:
    """Datasets from a TFDS dataset already prepared in `data_dir` (no download by default).

    The images are read as the encoded bytes TFDS stores (`SkipDecoding`) and go through
    the same decode, crop and resize as files do.

    Args:
        name: the TFDS name, e.g. "tf_flowers" or "cifar10:3.0.2".
        data_dir: where the prepared dataset is (default: TFDS's).
        splits: the train, validation and optionally test split names ("" to skip one).
        image_key: the image feature.
        label_key: the class label feature.
        download: let TFDS download and prepare the dataset if it is missing.
        options: the pipeline options (`PipelineOptions`).
        **pipeline: fields of `PipelineOptions` (`image_size`, `batch_size`, `augment`, ...).

    Example:
    >>> tfds_datasets("tf_flowers", data_dir="/no/such/dir")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: TFDS dataset 'tf_flowers' is not prepared in '/no/such/dir/...
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {str(builder.data_dir)!r}. Prepare "
                f"it there (tfds build, or download=True on a machine with internet)."
            )
        builder.download_and_prepare()
    names = list(builder.info.features[label_key].names)
    sources = {}
    for part, split in zip(("train", "val", "test"), splits, strict=False):
        if not split:
            continue
        ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()})
        ds = ds.map(
            lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
            num_parallel_calls=AUTOTUNE,
        )
        sources[part] = (ds, int(builder.info.splits[split].num_examples), None)
    return build_image_data(sources, names, PipelineOptions.resolve(options, **pipeline))
