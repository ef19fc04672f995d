"""TFRecord shards and prepared TFDS datasets as a run's data, named as `--data` is.

- a folder written by `tfinetune convert`: its `dataset.json` names each split's shards;
- a glob of shard files (`records/train-*.tfrecord`), with the `dataset.json` that `convert`
  wrote beside them for the class names;
- `tfds:NAME` (a TFDS name, with `:VERSION` if wanted) prepared in a data folder; where it is
  missing, TFDS downloads and prepares it (on a machine with internet).

No image is decoded before training: one pass reads every record's label (which also finds a
damaged shard before the first step) into a compact `RecordIndex`; records that fail to
decode while training are named after the epoch (`tfinetune.runs.skipped`).
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.data.datasets import ImageData, build_image_data
from tfinetune.data.pipeline import AUTOTUNE, PipelineOptions
from tfinetune.data.record_index import RecordIndex
from tfinetune.data.records import MANIFEST, parse_record, read_tfrecords

TFDS_PREFIX = "tfds:"
# The most encoded records (bytes) the training shuffle of shards holds.
SHUFFLE_BYTES = 256 * 1024**2
PARSE_BATCH = 256  # records parsed in one step


def is_record_source(data: str | os.PathLike) -> bool:
    """Whether `--data` names TFRecord shards or a TFDS dataset rather than files.

    Args:
        data: the data argument.

    Example:
    >>> [is_record_source(d) for d in ("tfds:mnist", "r/train-*.tfrecord", "photos")]
    [True, True, False]
    """
    text = os.fspath(data)
    return (
        text.startswith(TFDS_PREFIX)
        or ".tfrecord" in Path(text).name
        or (Path(text).is_dir() and (Path(text) / MANIFEST).is_file())
    )


def _shard_split(data: str, split: str) -> tuple[list[Path], dict]:
    """The shards of one split and the `dataset.json` that names the classes."""
    folder = Path(data)
    if folder.is_dir():
        manifest = json.loads((folder / MANIFEST).read_text())
        return [folder / s for s in manifest["shards"].get(split, [])], manifest
    paths = sorted(Path(p) for p in glob.glob(data))
    if not paths:
        raise FileNotFoundError(f"No shard matches {data!r}: check the path and the pattern.")
    described = paths[0].parent / MANIFEST
    if not described.is_file():
        raise FileNotFoundError(
            f"No {MANIFEST} beside the shards {data!r}: the class names come from the "
            f"{MANIFEST} that `tfinetune convert` writes; pass its folder or keep it beside them."
        )
    return paths, json.loads(described.read_text())


def _label_index(read, sources: list[str], names: list[str], what: str) -> RecordIndex:
    """Every record's label, source by source, in one pass that decodes no image."""
    counts, labels = [], []
    for source in sources:
        try:
            found = [int(y) for y in read(source).map(lambda _, y: y).batch(4096)
                     .unbatch().as_numpy_iterator()]  # fmt: skip
        except tf.errors.OpError as err:
            raise _damaged(what, source, err) from None
        counts.append(len(found))
        labels += found
    return RecordIndex(sources, np.array(counts, np.int64), np.array(labels, np.int32), names)


def _damaged(what: str, source: str, err: Exception) -> ValueError:
    return ValueError(
        f"{what} {source!r} cannot be read ({getattr(err, 'message', err)}): it is damaged or "
        "cut short; write it again (tfinetune convert)."
    )


def _shard_index(paths: list[str], names: list[str]) -> RecordIndex:
    """Every record's label from many shards, read in parallel (labels parsed in batches)."""
    spec = {"image/class/label": tf.io.VarLenFeature(tf.int64)}

    def labels(shard, records):
        parsed = tf.sparse.to_dense(tf.io.parse_example(records, spec)["image/class/label"])
        return shard, parsed[:, 0] if parsed.shape.rank == 2 else parsed

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths)).interleave(
        lambda i, p: tf.data.TFRecordDataset(p).batch(4096).map(lambda r: labels(i, r)),
        cycle_length=min(8, len(paths)), num_parallel_calls=AUTOTUNE, deterministic=True,
    )  # fmt: skip
    shards, found = [], []
    try:
        for shard, batch in ds.as_numpy_iterator():
            shards.append(np.full(len(batch), shard, np.int64))
            found.append(batch.astype(np.int32))
    except tf.errors.OpError:  # which one: read them one by one
        return _label_index(lambda p: read_tfrecords([p], len(names)), paths, names, "The shard")
    shard_of = np.concatenate(shards) if shards else np.zeros(0, np.int64)
    order = np.argsort(shard_of, kind="stable")  # each shard's records stay in order
    labels_ = np.concatenate(found)[order] if found else np.zeros(0, np.int32)
    return RecordIndex(paths, np.bincount(shard_of, minlength=len(paths)), labels_, names)


def shuffled_records(
    index: RecordIndex, num_classes: int, encoded_bytes: int, seed: int | None
) -> tf.data.Dataset:
    """`(record index, (encoded, label))` for training, in a new order every epoch, in
    bounded memory: the shards in a new order, 16 read at once and interleaved, then shuffled
    in a buffer of at most `SHUFFLE_BYTES` of records, then parsed a batch at a time.

    Args:
        index: the training records.
        num_classes: the number of classes.
        encoded_bytes: the shards' total size (for the buffer's length).
        seed: seeds both shuffles.
    """
    starts = np.cumsum(index.counts) - index.counts
    shards = tf.data.Dataset.from_tensor_slices((index.sources, starts))
    shards = shards.shuffle(len(index.sources), seed=seed, reshuffle_each_iteration=True)

    def read(path, start):
        return tf.data.TFRecordDataset(path).enumerate(start)

    ds = shards.interleave(read, cycle_length=min(16, len(index.sources)),
                           num_parallel_calls=AUTOTUNE, deterministic=True)  # fmt: skip
    per_record = max(1, encoded_bytes // max(1, len(index)))
    buffer = int(max(1, min(len(index), SHUFFLE_BYTES // per_record)))
    ds = ds.shuffle(buffer, seed=None if seed is None else seed + 1, reshuffle_each_iteration=True)
    # Parsed PARSE_BATCH records at a time, then one by one again: at 1M images, where the
    # records are read while training, parsing each alone held 1M shards to 0.90x of the
    # 10k run's throughput, against 1.72x now (`benchmarks/scale.py`, its README section).
    ds = ds.batch(PARSE_BATCH).map(
        lambda i, r: (i, parse_record(r, num_classes)),
        num_parallel_calls=AUTOTUNE, deterministic=True,
    )  # fmt: skip
    return ds.unbatch()


def shard_datasets(
    train: str, val: str | None, options: PipelineOptions, verbose: int = 0
) -> ImageData:
    """Datasets from TFRecord shards (a `convert` folder or a glob), labels indexed once.

    Args:
        train: a folder written by `tfinetune convert`, or a glob of its training shards.
        val: a glob of validation shards (or a `convert` folder's `val`); with a `convert`
            folder as `train` and no `val`, its own `val` (and `test`) shards.
        options: the pipeline options.
        verbose: say what was found.

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> from tfinetune.data.records import convert_folder
    >>> root = tempfile.mkdtemp()
    >>> _ = convert_folder(write_shapes_folder(root + "/d", ["ring", "star"], 5), root + "/r")
    >>> d = shard_datasets(root + "/r", None, PipelineOptions(16, 4))
    >>> len(d.records["train"]), len(d.records["val"]), d.records["val"].name(0)[-16:]
    (8, 2, '00001.tfrecord#0')
    """
    shards, manifest = _shard_split(train, "train")
    parts = {"train": shards}
    if val:
        parts["val"] = _shard_split(val, "val")[0]
    elif Path(train).is_dir():
        parts.update({s: _shard_split(train, s)[0] for s in ("val", "test")})
    names = list(manifest["class_names"])

    sources, records = {}, {}
    for split, paths in parts.items():
        if not paths:
            continue
        index = _shard_index([str(p) for p in paths], names)
        index.read = lambda paths=paths: read_tfrecords(paths, len(names))
        size = sum(p.stat().st_size for p in paths)
        records[split] = index
        if split == "train":  # indexed, shuffled by shard, bounded: bytes, not paths
            train = shuffled_records(index, len(names), size, options.seed)
            sources[split] = (train, len(index), size, False)
        else:
            sources[split] = (index.read(), len(index), size)
    if verbose:
        print(", ".join(f"{split}: {len(i)} records" for split, i in records.items()))
    return build_image_data(sources, names, options, records=records, log_decodes=True,
                            train_labels=records["train"].labels)  # fmt: skip


def tfds_run_datasets(
    data: str,
    data_dir: str | os.PathLike | None,
    options: PipelineOptions,
    val_split: float = 0.2,
    verbose: int = 0,
) -> ImageData:
    """Datasets from `tfds:NAME`: its train split, and its validation split or else a held
    out `val_split` of train (TFDS's percent slicing), labels indexed once.

    Args:
        data: `tfds:NAME` (or `tfds:NAME:VERSION`).
        data_dir: where the dataset is prepared (default: TFDS's); where it is missing,
            TFDS downloads and prepares it there.
        options: the pipeline options.
        val_split: the share of train held out when the dataset has no validation split.
        verbose: say what was found.

    Example:
    >>> tfds_run_datasets("tfds:", None, PipelineOptions())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...tfds:NAME...
    """
    import tensorflow_datasets as tfds

    name = data[len(TFDS_PREFIX) :]
    if not name:
        raise ValueError(f"{data!r} names no dataset: write tfds:NAME, e.g. tfds:tf_flowers.")
    builder = _prepared_builder(tfds, name, data_dir)
    info = builder.info
    image_key, label_key = info.supervised_keys or ("image", "label")
    names = list(info.features[label_key].names)
    if "validation" in info.splits:
        splits = {"train": "train", "val": "validation"}
    elif val_split:
        cut = round(100 * (1 - val_split))
        splits = {"train": f"train[:{cut}%]", "val": f"train[{cut}%:]"}
    else:
        splits = {"train": "train"}

    def read(split):
        ds = builder.as_dataset(split=split, decoders={image_key: tfds.decode.SkipDecoding()})
        return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
                      num_parallel_calls=AUTOTUNE)  # fmt: skip

    sources, records = {}, {}
    for part, split in splits.items():
        index = _label_index(read, [split], names, "The TFDS split")
        index.sources = [f"{data}/{split}"]
        index.read = lambda split=split: read(split)
        sources[part], records[part] = (index.read(), len(index), None), index
    if verbose:
        print(", ".join(f"{split}: {len(i)} records" for split, i in records.items()))
    return build_image_data(sources, names, options, records=records, log_decodes=True,
                            train_labels=records["train"].labels)  # fmt: skip


def _prepared_builder(tfds, name: str, data_dir):
    """The TFDS builder of `name`, prepared in `data_dir` (downloaded there if missing)."""
    where = None if data_dir is None else os.fspath(data_dir)
    try:
        builder = tfds.builder(name, data_dir=where)
    except Exception as err:  # TFDS raises its own errors for unknown names
        raise ValueError(f"TFDS has no dataset {name!r}: {str(err).splitlines()[0]}") from None
    if not builder.is_prepared():
        try:
            builder.download_and_prepare()
        except Exception as err:  # no internet, a full disk: TFDS's own errors
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in {str(builder.data_dir)!r}, and "
                f"preparing it failed ({str(err).splitlines()[0][:200]}). Prepare it there "
                "on a machine with internet (tfds build), or pass --tfds-dir."
            ) from None
    return builder
