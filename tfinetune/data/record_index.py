"""A compact index of records (TFRecord shards, TFDS splits): where each is, and its label.

A million records are a few arrays here, not a million Python objects: the sources (shard
files or a TFDS split), how many records each holds, and one label per record. A record is
named `SOURCE#POSITION` (its position within the source, from 0) in manifests and messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfinetune.data.files import LabelledFiles, tf_error_text


@dataclass
class RecordIndex:
    """The records of one split: their sources, counts per source and labels.

    Args:
        sources: the shard files (or TFDS splits) in reading order.
        counts: the number of records in each source.
        labels: one label per record, in reading order (class indices).
        class_names: the names the labels index.
        read: makes a `tf.data.Dataset` of `(encoded image, label)` in reading order (to
            say why a record fails to decode, or to take a sample).

    Example:
    >>> index = RecordIndex(["a.tfrecord", "b.tfrecord"], np.array([2, 1]), np.array([0, 1, 1]),
    ...                     ["cat", "dog"])
    >>> len(index), index.name(2), list(index.rows())[1]
    (3, 'b.tfrecord#0', ('a.tfrecord#1', 'dog'))
    """

    sources: list[str]
    counts: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    read: Callable[[], Any] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def _where(self, index: int) -> tuple[int, int]:
        ends = np.cumsum(self.counts)
        source = int(np.searchsorted(ends, index, side="right"))
        return source, int(index - (ends[source] - self.counts[source]))

    def name(self, index: int) -> str:
        """`SOURCE#POSITION` of the record at `index` (in reading order)."""
        source, position = self._where(index)
        return f"{self.sources[source]}#{position}"

    def rows(self) -> Iterator[tuple[str, str]]:
        """`(name, class name)` of every record, in reading order."""
        index = 0
        for source, count in zip(self.sources, self.counts, strict=True):
            for position in range(int(count)):
                yield f"{source}#{position}", self.class_names[int(self.labels[index])]
                index += 1

    def failure(self, index: int) -> str:
        """Why the record at `index` does not decode, in the decoder's words.

        Args:
            index: the record's position in reading order.
        """
        if self.read is None:
            return "cannot be decoded"
        encoded, _ = next(iter(self.read().skip(index).take(1)))
        return decode_error(encoded) or "cannot be decoded"

    def failures(self) -> dict[int, str]:
        """Every record that does not decode, by position: why (decodes them all, one by one)."""
        if self.read is None:
            return {}
        found = ((i, decode_error(encoded)) for i, (encoded, _) in enumerate(self.read()))
        return {i: error for i, error in found if error}

    def sample(self, folder: Path, limit: int = 64) -> LabelledFiles:
        """The first `limit` records that decode, written as image files into `folder/CLASS/`,
        to check an export on real images (`tfinetune.serving.verify.export_check`,
        `tfinetune export`).

        Args:
            folder: where to write them (it is created).
            limit: the most records to write.
        """
        from tfinetune.data.images import sniff_format

        folder.mkdir(parents=True, exist_ok=True)
        paths, labels = [], []
        for i, (encoded, label) in enumerate(self.read() if self.read else ()):
            if len(paths) == limit:
                break
            if decode_error(encoded):  # the manifest names it; not a sample
                continue
            data = encoded.numpy()
            name = self.class_names[int(label)].replace(os.sep, "_")
            path = folder / name / f"record_{i:05d}.{sniff_format(data[:16]) or 'img'}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            paths.append(str(path))
            labels.append(int(label))
        return LabelledFiles(paths, labels, list(self.class_names))


def decode_error(encoded: Any) -> str | None:
    """Why encoded image bytes do not decode (`cannot be decoded: ...`), or None if they do.

    Args:
        encoded: a scalar string tensor of image bytes.

    Example:
    >>> decode_error(b"not an image")[:45]
    'cannot be decoded: Unknown image file format.'
    """
    import tensorflow as tf

    from tfinetune.data.images import decode_image

    try:
        decode_image(encoded)
    except (tf.errors.OpError, ValueError) as err:
        return f"cannot be decoded: {tf_error_text(err)}"
    return None
