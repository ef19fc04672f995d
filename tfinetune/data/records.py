"""TFRecord files of encoded images: write a folder as split shards, read them back.

`convert_folder` (the `tfinetune convert` command) writes a folder of classes as sharded
TFRecord files of `tf.train.Example`s: `image/encoded` (the file's bytes, unchanged) and
`image/class/label` (one or more class indices), split into train / val / test with the
same seeded stratified split as the folder loaders, with `dataset.json` describing them.
`tfrecord_datasets` reads them back through the same pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfinetune.atomic import check_output_folder, folder_lock, resumable_folder
from tfinetune.bars import progress_bar
from tfinetune.data.datasets import ImageData, build_image_data
from tfinetune.data.files import LabelledFiles
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.pipeline import AUTOTUNE, PipelineOptions
from tfinetune.data.splits import split_indices

MANIFEST = "dataset.json"
FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.VarLenFeature(tf.int64),
}


def _example(encoded: bytes, labels: Sequence[int]) -> bytes:
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_tfrecords(
    files: LabelledFiles,
    prefix: str | os.PathLike,
    *,
    shard_size: int = 1000,
    verbose: int = 0,
    workers: int = 1,
) -> list[str]:
    """Write labelled files as TFRecord shards `<prefix>-00000-of-00003.tfrecord`, ...

    Each shard is written to a temporary name and renamed when complete; a shard already
    complete under its final name is kept (so an interrupted write can be resumed).

    Args:
        files: the labelled files (already checked, e.g. by `scan_image_folder`).
        prefix: the path prefix of the shard files.
        shard_size: examples per shard.
        verbose: show a progress bar.
        workers: shards written at once (threads).

    Returns:
        The shard paths.

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = tempfile.mkdtemp()
    >>> files = scan_image_folder(write_shapes_folder(root + "/d", ["ring", "star"], 3, size=16))
    >>> [Path(p).name for p in write_tfrecords(files, root + "/train", shard_size=4)]
    ['train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord']
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1. Received: {shard_size!r}")
    n_shards = max(1, -(-len(files) // shard_size))
    progress = progress_bar(len(files), "image", "writing", verbose)
    paths = [f"{os.fspath(prefix)}-{i:05d}-of-{n_shards:05d}.tfrecord" for i in range(n_shards)]

    def write(shard: int) -> None:
        rows = range(shard * shard_size, min(len(files), (shard + 1) * shard_size))
        if not os.path.exists(paths[shard]):  # complete shards stay as they are
            partial = paths[shard] + ".partial"
            with tf.io.TFRecordWriter(partial) as writer:
                for i in rows:
                    labels = files.labels[i]
                    labels = labels if isinstance(labels, (tuple, list)) else [labels]
                    writer.write(_example(Path(files.paths[i]).read_bytes(), labels))
            os.replace(partial, paths[shard])
        return len(rows)

    pool = ThreadPoolExecutor(max(1, workers))
    try:
        for written in pool.map(write, range(n_shards)):  # in order; the first error is raised
            if progress:
                progress.add(written)
    finally:  # on an error or Ctrl-C, shards not begun are not begun
        pool.shutdown(wait=True, cancel_futures=True)
    return paths


PLAN = "plan.json"


def convert_folder(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    seed: int = 1337,
    shard_size: int = 1000,
    verbose: int = 0,
    workers: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert a folder of classes into split, sharded TFRecord files and `dataset.json`.

    The shards are written in parallel into `NAME.partial`, which becomes `out_dir` when
    every one is complete. Interrupted, `resume=True` writes only the shards still missing
    (the same files, split and shard size are required: `plan.json` records them).

    Args:
        data_dir: a folder with one sub-folder per class.
        out_dir: a new or empty folder; it appears only when every shard is written.
        val_split: the share for validation (0: none).
        test_split: the share for testing (0: none).
        seed: seeds the stratified split.
        shard_size: examples per shard.
        verbose: show progress.
        workers: shards written at once (default: one per CPU).
        resume: continue the unfinished conversion of `out_dir` (`NAME.partial`).
        overwrite: replace an earlier `out_dir` when this one is complete.

    Returns:
        The manifest: class names, counts and shard files per split, and skipped files.

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/d", ["ring", "star"], 5, size=16)
    >>> convert_folder(data, root + "/records")["counts"]
    {'train': 8, 'val': 2}
    """
    if not resume:
        check_output_folder(out_dir, overwrite=overwrite)
    files = scan_image_folder(data_dir, verbose=verbose)
    parts = {
        name: files.subset(idx)
        for name, idx in split_indices(files.labels, val_split, test_split, seed).items()
    }
    digests = {name: hashlib.sha1("\n".join(part.paths).encode()).hexdigest()
               for name, part in parts.items()}  # fmt: skip
    plan = {"data": str(Path(data_dir).resolve()), "shard_size": shard_size, "parts": digests}
    manifest = {
        "class_names": files.class_names,
        "counts": {name: len(part) for name, part in parts.items()},
        "shards": {},
        "bad_files": [{"path": b.path, "reason": b.reason} for b in files.bad_files],
        "seed": seed,
    }
    with folder_lock(out_dir), resumable_folder(out_dir, "records", overwrite, resume, PLAN) as out:
        _check_plan(out / PLAN, plan, resume)
        for name, part in parts.items():
            shards = write_tfrecords(part, out / name, shard_size=shard_size, verbose=verbose,
                                     workers=workers or os.cpu_count() or 1)  # fmt: skip
            manifest["shards"][name] = [Path(p).name for p in shards]
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
        (out / PLAN).unlink()
    return manifest


def _check_plan(path: Path, plan: dict, resume: bool) -> None:
    """Record what is written; a resumed conversion must write the same."""
    if resume and path.is_file() and json.loads(path.read_text()) != plan:
        raise ValueError(
            f"The files, split or shard size differ from those of the unfinished conversion in "
            f"{str(path.parent)!r}; resuming would mix two. Start again with --overwrite."
        )
    if not path.is_file():
        path.write_text(json.dumps(plan))


def read_tfrecords(
    paths: Sequence[str | os.PathLike], num_classes: int, multi_label: bool = False
) -> tf.data.Dataset:
    """A dataset of `(encoded bytes, label)` from TFRecord files of tf.train.Examples.

    Args:
        paths: TFRecord files.
        num_classes: the number of classes (for multi-hot labels).
        multi_label: labels as multi-hot float32 rows instead of one class index.

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = tempfile.mkdtemp()
    >>> files = scan_image_folder(write_shapes_folder(root + "/d", ["ring", "star"], 2, size=16))
    >>> ds = read_tfrecords(write_tfrecords(files, root + "/x"), 2)
    >>> [int(label) for _, label in ds]
    [0, 0, 1, 1]
    """

    records = tf.data.TFRecordDataset([os.fspath(p) for p in paths], num_parallel_reads=None)
    return records.map(lambda r: parse_record(r, num_classes, multi_label),
                       num_parallel_calls=AUTOTUNE)  # fmt: skip


def parse_record(
    record: tf.Tensor, num_classes: int, multi_label: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """`(encoded bytes, label)` from serialized `tf.train.Example`s that `convert` wrote: one
    (a scalar string), or a batch (a vector: one parsing step for all, far less work per
    record than one each).

    Args:
        record: the serialized example, or a vector of them.
        num_classes: the number of classes (for multi-hot labels).
        multi_label: the label as a multi-hot float32 row instead of one class index.

    Example:
    >>> int(parse_record(tf.constant(_example(b"img", [1])), 2)[1])
    1
    >>> parse_record(tf.constant([_example(b"a", [0]), _example(b"b", [0, 1])]), 2, True)[1]
    <tf.Tensor: shape=(2, 2), dtype=float32, numpy=
    array([[1., 0.],
           [1., 1.]], dtype=float32)>
    """
    example = tf.io.parse_example(tf.reshape(record, [-1]), FEATURES)
    labels = tf.sparse.to_dense(example["image/class/label"], default_value=-1)
    if multi_label:  # -1 pads the shorter rows: its one-hot row is zeros
        label = tf.reduce_max(tf.one_hot(labels, num_classes), axis=1)
    else:
        label = tf.cast(labels[:, 0], tf.int32)
    encoded = example["image/encoded"]
    return (encoded, label) if record.shape.rank == 1 else (encoded[0], label[0])


def tfrecord_datasets(
    records_dir: str | os.PathLike,
    *,
    options: PipelineOptions | None = None,
    **pipeline: Any,
) -> ImageData:
    """Datasets from a folder written by `convert_folder` (`tfinetune convert`).

    Args:
        records_dir: the folder holding `dataset.json` and the shards.
        options: the pipeline options (`PipelineOptions`).
        **pipeline: fields of `PipelineOptions` (`image_size`, `batch_size`, `augment`, ...).

    Example:
    >>> import tempfile
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> root = tempfile.mkdtemp()
    >>> _ = convert_folder(write_shapes_folder(root + "/d", ["ring", "star"], 5), root + "/r")
    >>> d = tfrecord_datasets(root + "/r", image_size=16)
    >>> d.class_names, sum(len(y) for _, y in d.val)
    (['ring', 'star'], 2)
    """
    folder = Path(records_dir)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"No {MANIFEST} in {str(folder)!r}: write the folder with `tfinetune convert`."
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    names = manifest["class_names"]
    sources = {
        part: (
            read_tfrecords([folder / s for s in shards], len(names)),
            manifest["counts"][part],
            sum((folder / s).stat().st_size for s in shards),
        )
        for part, shards in manifest["shards"].items()
    }
    return build_image_data(sources, names, PipelineOptions.resolve(options, **pipeline))
