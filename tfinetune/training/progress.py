"""Progress of a staged fine-tuning: each epoch labelled with its stage, a table per stage."""

from __future__ import annotations

import math

import keras

from tfinetune.training.stages import FineTuneHistory


class StageProgress(keras.callbacks.Callback):
    """Prints "stage 2/2 fine-tune, epoch 3/6" before each epoch of a stage.

    Args:
        index: the stage's index (from 0).
        count: how many stages the call trains.
        name: the stage's name.
        start: the global number of the stage's first epoch (from 0).
    """

    def __init__(self, index: int, count: int, name: str, start: int) -> None:
        super().__init__()
        self.label, self.start = f"stage {index + 1}/{count} {name}", start

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        total = self.params.get("epochs", 0) - self.start
        print(f"{self.label}, epoch {epoch - self.start + 1}/{total}", flush=True)


def stage_table(history: FineTuneHistory, current: str | None = None) -> str:
    """A short table: one row per stage so far, with its last epoch's metrics.

    Args:
        history: the history so far.
        current: the stage just finished (marked with `*`).

    Example:
    >>> h = FineTuneHistory({"loss": [0.9, 0.5], "val_accuracy": [0.7, 0.8]},
    ...                     [("head", 0, 1), ("fine-tune", 1, 2)])
    >>> print(stage_table(h, "fine-tune"))
      stage      epochs  loss    val_accuracy
      head       1-1     0.9000  0.7000
    * fine-tune  2-2     0.5000  0.8000
    """
    keys = sorted(history.history, key=lambda k: (k.startswith("val_"), k))
    keys = [k for k in keys if k != "learning_rate"]
    width = max([len("stage"), *(len(n) for n, _, _ in history.stages)])
    rows = [["stage".ljust(width), "epochs", *keys]]
    marks = [" "]
    for name, start, end in history.stages:
        values = [history.history[k][end - 1] if end else math.nan for k in keys]
        rows.append([name.ljust(width), f"{start + 1}-{end}", *(f"{v:.4f}" for v in values)])
        marks.append("*" if name == current else " ")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        f"{mark} " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for mark, row in zip(marks, rows, strict=True)
    )
