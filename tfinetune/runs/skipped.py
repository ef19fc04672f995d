"""Data that failed to decode while training or evaluating: named in the run's manifest.

A scan that reads headers only (large inputs) or nothing (TFRecord shards, TFDS) cannot see a
file whose header is sound and whose image data is corrupt. The pipeline drops such an
element and flags every one it decoded (`tfinetune.data.decode_log`); after each epoch that
is a whole pass, `SkippedInTraining` names the ones that failed, with the decoder's reason,
in `manifest.csv`, so that every file is still used or reported. Validation data that comes
up short when the run evaluates it is decoded once more, element by element, to name the
failures the same way (`name_validation_failures`).
"""

from __future__ import annotations

from pathlib import Path

import keras

from tfinetune.data.datasets import ImageData
from tfinetune.data.files import check_files, failure_reason
from tfinetune.runs.folder import write_manifest


def training_element(data: ImageData, index: int) -> tuple[str, str]:
    """The name of a training element (a file path, or `shard#record`) and why it fails.

    Args:
        data: the run's datasets.
        index: the element's position in the training files or records.

    Example:
    >>> import tempfile, os
    >>> from tfinetune.data.files import LabelledFiles
    >>> p = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> _ = open(p, "wb").write(b"\\x89PNG\\r\\n\\x1a\\n broken")
    >>> d = ImageData(None, None, ["a"], train_files=LabelledFiles([p], [0], ["a"]))
    >>> training_element(d, 0)[1].startswith("cannot be decoded")
    True
    """
    records = getattr(data, "records", None) or {}
    if data.train_files is not None:
        path = data.train_files.paths[index]
        return path, failure_reason(path)
    if "train" in records:
        return records["train"].name(index), records["train"].failure(index)
    return f"training element {index}", "cannot be decoded"


class SkippedInTraining(keras.callbacks.Callback):
    """After each epoch, names the training elements that failed to decode in the manifest.

    Only an epoch that is a whole pass over the data counts (the pipeline reads ahead, so an
    epoch cut short by `steps_per_epoch` or a stop leaves elements in flight); each element
    is named once, with the epoch it failed in.

    Args:
        data: the run's datasets, with their `decode_log`.
        out: the run folder whose `manifest.csv` is rewritten.
        verbose: print a line per epoch that skipped something.
        whole_epochs: whether each epoch is a whole pass (no `steps_per_epoch`).

    Example:
    >>> import numpy as np
    >>> from tfinetune.data.datasets import array_datasets
    >>> d = array_datasets(np.zeros((4, 8, 8), "uint8"), np.array([0, 1] * 2), ["a", "b"],
    ...                    val_split=0, image_size=8)
    >>> _ = list(d.train)  # a whole pass: every element decoded
    >>> SkippedInTraining(d, Path("unused")).on_epoch_end(0)
    >>> d.skipped_in_training
    {}
    """

    def __init__(
        self, data: ImageData, out: Path, verbose: int = 1, whole_epochs: bool = True
    ) -> None:
        super().__init__()
        self.data, self.out, self.verbose, self.whole = data, Path(out), verbose, whole_epochs

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        log, skipped = self.data.decode_log, self.data.skipped_in_training
        stopped = getattr(self.model, "stop_training", False)  # cut short: elements in flight
        if log is None or not self.whole or stopped:  # elements may be in flight
            return
        failed = log.failed()
        new = [int(i) for i in failed if int(i) not in skipped]
        if not new:
            return
        names = []
        for index in new:
            name, reason = training_element(self.data, index)
            skipped[index] = f"failed to decode while training (epoch {epoch + 1}): {reason}"
            names.append(name)
        write_manifest(self.out, self.data)
        if self.verbose:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            print(
                f"Epoch {epoch + 1}: skipped {len(new)} training file(s) that failed to decode "
                f"({shown}); manifest.csv names each with the reason."
            )


def split_size(data: ImageData, split: str) -> int | None:
    """How many files or records a split holds (None: not known, such as arrays)."""
    files = getattr(data, f"{split}_files", None)
    if files is not None:
        return len(files)
    return len(data.records[split]) if split in data.records else None


def failed_elements(data: ImageData, split: str, verbose: int = 0) -> dict[int, str]:
    """Each element of a split that does not decode, by position: the decoder's reason.

    Decodes the whole split once more (files in parallel, records one by one): for when an
    evaluation came up short, not for every run.

    Args:
        data: the run's datasets.
        split: "val" or "test".
        verbose: a progress bar over files.

    Example:
    >>> import tempfile, os
    >>> from tfinetune.data.files import LabelledFiles
    >>> p = os.path.join(tempfile.mkdtemp(), "x.jpg")
    >>> _ = open(p, "wb").write(b"\\xff\\xd8\\xff\\xe0 cut short")
    >>> d = ImageData(None, None, ["a"], val_files=LabelledFiles([p], [0], ["a"]))
    >>> failed_elements(d, "val")[0].startswith("cannot be decoded")
    True
    """
    files = getattr(data, f"{split}_files", None)
    if files is not None:
        position = {path: i for i, path in enumerate(files.paths)}
        return {position[b.path]: b.reason for b in check_files(files.paths, verbose)[0]}
    return data.records[split].failures() if split in data.records else {}


def name_validation_failures(data: ImageData, out: Path, verbose: int = 1) -> None:
    """Name the validation elements that failed to decode in the run's manifest.

    Args:
        data: the run's datasets; `skipped_in_validation` is filled in.
        out: the run folder whose `manifest.csv` is rewritten.
        verbose: print one line naming them.
    """
    failed = failed_elements(data, "val")
    if not failed:
        return
    data.skipped_in_validation.update(
        {i: f"failed to decode while evaluating: {reason}" for i, reason in failed.items()}
    )
    write_manifest(out, data)
    if verbose:
        files = data.val_files
        names = [files.paths[i] if files else data.records["val"].name(i) for i in failed]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        print(
            f"Skipped {len(failed)} validation file(s) that failed to decode ({shown}); "
            "manifest.csv names each with the reason."
        )
