"""Labelled text from CSV files: a text column and a label column, into `tf.data` batches.

Strings go through `tf.data` as they are: the text model's own preprocessing (tokenising,
lower-casing) is inside the model, so training, evaluation and serving read the same text.
Rows with an empty text are skipped and reported, as unreadable images are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.data.datasets import ImageData
from tfinetune.data.files import BadFile, label_array
from tfinetune.data.limits import env_limit
from tfinetune.data.pipeline import AUTOTUNE
from tfinetune.data.splits import split_parts
from tfinetune.data.tables import parse_labels, read_csv_rows

MAX_TEXT_BYTES_ENV = "TFINETUNE_MAX_TEXT_BYTES"
DEFAULT_MAX_TEXT_BYTES = 1_000_000


def max_text_bytes() -> int:
    """The longest text, in UTF-8 bytes, a served text model takes (one CSV cell holds at
    most 131,072 characters, so nothing trained on is longer than 524,288 bytes).

    Example:
    >>> max_text_bytes()
    1000000
    """
    return int(env_limit(MAX_TEXT_BYTES_ENV, DEFAULT_MAX_TEXT_BYTES, "a whole number of bytes"))


def check_text_lengths(texts: tf.Tensor) -> tf.Tensor:
    """`texts`, once none is longer than `max_text_bytes()`; an error naming the limit otherwise.

    A text model's memory grows with the words it is given (a 100 MB request took 2.8 GB),
    so a served model refuses what no training text could have been.

    Args:
        texts: a string tensor.

    Example:
    >>> check_text_lengths(tf.constant(["short"])).numpy().tolist()
    [b'short']
    """
    limit = max_text_bytes()
    longest = tf.reduce_max(tf.concat([tf.strings.length(tf.reshape(texts, [-1])), [0]], 0))
    check = tf.debugging.assert_less_equal(longest, limit, message=(
        f"a text longer than {limit} bytes; send at most {limit} bytes of UTF-8 per text "
        f"(${MAX_TEXT_BYTES_ENV} when the model was exported sets the limit)"))  # fmt: skip
    with tf.control_dependencies([check]):
        return tf.identity(texts)


@dataclass
class LabelledTexts:
    """Texts with labels, the class names the labels index, and the rows skipped.

    Args:
        texts: one string per example.
        labels: class indices, tuples of indices (multi-label) or numbers (regression).
        class_names: the names the labels index (regression: the target's name).
        task: "single_label", "multi_label" or "regression".
        skipped: rows left out, with the reason (`path` is `file:line`).
        sources: where each text comes from (`file:line`), for manifests and messages.
    """

    texts: list[str]
    labels: list
    class_names: list[str]
    task: str = "single_label"
    skipped: list[BadFile] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sources = self.sources or [f"row {i + 1}" for i in range(len(self.texts))]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def paths(self) -> list[str]:
        """Where each text comes from (`file:line`), as `LabelledFiles.paths` names files."""
        return self.sources

    @property
    def bad_files(self) -> list[BadFile]:
        """The rows skipped, as `LabelledFiles.bad_files` lists files."""
        return self.skipped

    @property
    def multi_label(self) -> bool:
        """Whether each text has a set of labels rather than one."""
        return self.task == "multi_label"

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        """The rows at `indices`, with the same classes."""
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            self.class_names,
            self.task,
            sources=[self.sources[i] for i in indices],
        )

    def label_array(self) -> np.ndarray:
        """Labels as int32 class indices, float32 multi-hot rows, or float32 targets."""
        return label_array(self.labels, len(self.class_names), self.task)


def read_text_csv(
    csv_path: str | os.PathLike,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_delim: str | None = None,
    class_names: Sequence[str] | None = None,
    task: str | None = None,
) -> LabelledTexts:
    """Read a UTF-8 CSV with a header row, a text column and a label column.

    Args:
        csv_path: the CSV file.
        text_column: the header of the text column.
        label_column: the header of the label column.
        label_delim: the separator of several labels in one cell (multi-label).
        class_names: the classes, in label order (default: the names found, sorted).
        task: "single_label", "multi_label" or "regression"; by default multi-label when
            `label_delim` is given, else single-label.

    Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text('text,label\\n"Great, thanks",pos\\n,neg\\nawful,neg\\n')
    >>> data = read_text_csv(path)
    >>> data.texts, data.labels, data.class_names, [b.reason for b in data.skipped]
    (['Great, thanks', 'awful'], [1, 0], ['neg', 'pos'], ['empty text'])
    """
    path = Path(csv_path)
    table = read_csv_rows(path, {"text_column": text_column, "label_column": label_column})
    rows = [(line, r[text_column], r[label_column]) for line, r in table]
    skipped = [
        BadFile(f"{path}:{line}", "empty text") for line, text, _ in rows if not text.strip()
    ]
    skipped += [
        BadFile(f"{path}:{line}", "no label")
        for line, text, lab in rows
        if text.strip() and not lab
    ]
    rows = [(line, text, label) for line, text, label in rows if text.strip() and label]
    if not rows:
        raise ValueError(f"{str(path)!r} has no row with both a text and a label.")
    labels, names, task = parse_labels(
        [f"line {line}" for line, _, _ in rows],
        [label for _, _, label in rows],
        class_names=class_names,
        label_delim=label_delim,
        task=task,
        target_name=label_column,
    )
    texts = [text for _, text, _ in rows]
    sources = [f"{path}:{line}" for line, _, _ in rows]
    return LabelledTexts(texts, labels, names, task, skipped, sources)


def text_dataset(
    texts: LabelledTexts, *, batch_size: int = 32, training: bool = False, seed: int | None = None
) -> tf.data.Dataset:
    """Batches of `(string [batch], labels)`; for training reshuffled every epoch (seeded).

    Args:
        texts: the labelled texts.
        batch_size: examples per batch.
        training: shuffle every epoch.
        seed: the shuffle seed.

    Example:
    >>> ds = text_dataset(LabelledTexts(["a", "b", "c"], [0, 1, 0], ["x", "y"]), batch_size=2)
    >>> [x.shape[0] for x, _ in ds]
    [2, 1]
    """
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.constant(texts.texts, dtype=tf.string), texts.label_array())
    )
    if training:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def text_datasets(
    train: LabelledTexts,
    val: LabelledTexts | None = None,
    test: LabelledTexts | None = None,
    *,
    val_split: float = 0.2,
    test_split: float = 0.0,
    batch_size: int = 32,
    seed: int = 1337,
) -> ImageData:
    """Training, validation and test datasets of texts; without `val`, a stratified split.

    Args:
        train: the training texts (see `read_text_csv`).
        val: the validation texts, or None to hold out `val_split` of `train` (seeded,
            stratified; 0 for none).
        test: the test texts, or None to hold out `test_split` of `train`.
        val_split: the share held out for validation when there is no `val`.
        test_split: the share held out for a test set when there is no `test`.
        batch_size: examples per batch.
        seed: seeds the split and the shuffling.

    Example:
    >>> rows = LabelledTexts([f"text {i}" for i in range(10)], [0, 1] * 5, ["x", "y"])
    >>> d = text_datasets(rows, val_split=0.2)
    >>> len(d.train_files), len(d.val_files)
    (8, 2)
    """
    parts = split_parts(train, val, test, val_split=val_split, test_split=test_split, seed=seed)
    built = {
        name: text_dataset(part, batch_size=batch_size, training=name == "train", seed=seed)
        for name, part in parts.items()
        if part
    }
    train_part = parts["train"]
    return ImageData(
        train=built["train"],
        val=built.get("val"),
        test=built.get("test"),
        class_names=list(train.class_names),
        train_files=train_part,
        val_files=parts["val"],
        test_files=parts["test"],
        bad_files=[b for p in (train, val, test) if p for b in p.skipped],
        train_labels=train_part.label_array() if train.task != "multi_label" else None,
        multi_label=train.task == "multi_label",
        task=train.task,
    )
