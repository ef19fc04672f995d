"""Progress of a staged fine-tuning: each epoch labelled with its stage, a table per stage."""

from __future__ import annotations

import math

import keras

from tfinetune.training.stages import FineTuneHistory


class StageProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, each epoch introduced by its stage: "stage 2/2 fine-tune, epoch 1/6".

    It takes the place of the bar `fit` would add, whose own "Epoch 5/10" line (counting
    across the stages) it leaves out. Given the batches in an epoch, it shows a bar with an
    ETA from the first epoch on, where Keras, with a dataset of unknown length, would show
    "1/Unknown" until the first epoch ends.

    Args:
        index: the stage's index (from 0).
        count: how many stages the call trains.
        name: the stage's name.
        start: the global number of the stage's first epoch (from 0).
        steps: the batches in one epoch, when known.
    """

    # As for Keras's own bar (which Keras adds after deciding): batch ends may be handled
    # off the training loop.
    async_safe = True

    def __init__(
        self, index: int, count: int, name: str, start: int, steps: int | None = None
    ) -> None:
        super().__init__()
        self.label, self.start, self.steps = f"stage {index + 1}/{count} {name}", start, steps

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.target = self.target or self.steps

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        epochs, self.epochs = self.epochs, 1  # 1: Keras prints no "Epoch 5/10" line
        try:
            super().on_epoch_begin(epoch, logs)
        finally:
            self.epochs = epochs
        if self.verbose:
            print(f"{self.label}, epoch {epoch - self.start + 1}/{epochs - self.start}", flush=True)


def stage_table(
    history: FineTuneHistory, current: str | None = None, averaged: bool = False
) -> str:
    """A short table: one row per stage so far, with its last epoch's metrics.

    Args:
        history: the history so far.
        current: the stage just finished (marked with `*`).
        averaged: the stage ends on the moving average of its weights (`ema_momentum`),
            which a line under the table says, since the metrics are the raw weights'.

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
    lines = [
        f"{mark} " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for mark, row in zip(marks, rows, strict=True)
    ]
    if averaged:
        lines.append(
            "  (metrics of each epoch's raw weights; the stage ends on their moving average, "
            "so evaluating the model now can give other numbers)"
        )
    return "\n".join(lines)


_DELEGATED = (
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class OneRun(keras.callbacks.Callback):
    """Shows a user's callback the stages of `fine_tune` as one continuous run.

    Each stage is a `model.fit`, and Keras begins and ends a run with each: a `CSVLogger`
    would rewrite its file, a `TensorBoard` reopen its writers. Wrapped, the callback's
    `on_train_begin` runs before the first stage only, and its `on_train_end` when `end()` is
    called after the last; every other call passes through, with epochs numbered across the
    stages (`fit`'s `initial_epoch`).

    Args:
        callback: the user's callback.

    Example:
    >>> seen = []
    >>> class Spy(keras.callbacks.Callback):
    ...     def on_train_begin(self, logs=None): seen.append("begin")
    ...     def on_train_end(self, logs=None): seen.append("end")
    >>> run = OneRun(Spy())
    >>> for _ in range(2):  # two stages
    ...     run.on_train_begin(); run.on_train_end()
    >>> run.end(); seen
    ['begin', 'end']
    """

    def __init__(self, callback: keras.callbacks.Callback) -> None:
        super().__init__()
        self.callback, self.begun = callback, False
        # Keras runs batch hooks off the training loop only for callbacks that say so
        self.async_safe = getattr(callback, "async_safe", False)
        for name in _DELEGATED:
            setattr(self, name, getattr(callback, name))

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.callback.set_model(model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.callback.set_params(params)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.begun:
            self.begun = True
            self.callback.on_train_begin(logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.last_logs = logs  # the run goes on: `end()` ends it

    def end(self) -> None:
        """End the run for the callback, with the last stage's final logs."""
        if self.begun:
            self.callback.on_train_end(getattr(self, "last_logs", None))
