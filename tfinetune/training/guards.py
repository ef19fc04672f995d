"""Checks around `fit` that turn silent damage and buried graph errors into clear messages.

- `check_training_data`: the dataset's element spec fits the model (pixels, channels, label
  type and width) before anything trains.
- `TrainingGuard`: stops with a message when an epoch has no batch (an empty dataset would
  otherwise end with the weight average swapped in although no step ran) or when the loss
  stops being finite.
- `explain_graph_error`: the one useful line of a TensorFlow "Graph execution error".
- `request_stop`: a signal handler's way to stop training for sure. Python delivers
  KeyboardInterrupt wherever the main thread is, and one that lands in a destructor (a
  `tf.data` iterator's, at an epoch's end) is printed as "ignored" and lost; the guard
  raises it again at the next batch.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

STOP_REQUESTED = threading.Event()


def request_stop() -> None:
    """Make the `TrainingGuard` of the training in progress raise KeyboardInterrupt.

    Example:
    >>> request_stop(); STOP_REQUESTED.is_set()
    True
    >>> STOP_REQUESTED.clear()
    """
    STOP_REQUESTED.set()


def check_training_data(model: keras.Model, dataset: Any) -> None:
    """Refuse a dataset of `(inputs, labels)` batches that cannot train this model.

    Args:
        model: the classifier.
        dataset: batches of `(pixels, labels)`.

    Example:
    >>> import tensorflow as tf
    >>> m = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
    ...                       keras.layers.Dense(2)])
    >>> ds = tf.data.Dataset.from_tensors((tf.zeros([1, 4, 4, 1]), tf.zeros([1], tf.int32)))
    >>> check_training_data(m, ds)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: The images have 1 channel(s) but the model takes 3...
    """
    spec = _element_spec(dataset)
    if not isinstance(spec, tuple) or len(spec) < 2:
        got = f"an array of shape {spec.shape}" if hasattr(spec, "shape") else f"{spec}"
        raise ValueError(
            "The training data must give (inputs, labels) batches, as model.fit expects: "
            f"pass (x, y) for arrays. Received {got}."
        )
    inputs, labels = spec[0], spec[1]
    channels, expected = inputs.shape[-1], model.input_shape[-1]
    takes_text = model.inputs[0].dtype == "string"
    if _is_string(inputs) and not takes_text:
        raise ValueError(
            "The inputs are strings: decode the images first (tfinetune's datasets do)."
        )
    if takes_text and not _is_string(inputs):
        raise ValueError(
            f"The model takes text (a string per example) but the inputs are {inputs.dtype.name}: "
            "give the texts themselves, as tfinetune.data.text's datasets do."
        )
    image = _rank(inputs.shape) == 4 and len(model.input_shape) == 4
    if image and channels is not None and expected is not None and channels != expected:
        raise ValueError(
            f"The images have {channels} channel(s) but the model takes {expected}: give RGB "
            "images (tf.image.grayscale_to_rgb for grayscale), as tfinetune's datasets do."
        )
    if _is_string(labels):
        raise ValueError(
            "The labels are strings: map them to class indices 0..n-1 (the order of the "
            "model's outputs) first, as tfinetune's datasets do."
        )
    width, outputs = labels.shape[-1] if _rank(labels.shape) == 2 else None, model.output_shape[-1]
    if width not in (None, 1) and width != outputs:
        raise ValueError(
            f"The labels are rows of {width} values but the model predicts {outputs} classes."
        )


class TrainingGuard(keras.callbacks.Callback):
    """Stop `fit` with a clear error on an epoch without batches or a non-finite loss.

    The loss is checked off the training loop (`async_safe`): Keras then dispatches the
    next step without waiting for this one's loss, which on a GPU added 17-27 % to the step
    time (`benchmarks/gpu_train_step.py`: the `tfinetune_noguard` rows, without a per-batch
    callback). A non-finite loss found off the loop is raised by the next batch to start
    (or at the epoch's end, before any callback such as a checkpoint sees the epoch); a
    stop request (`request_stop`) before the next batch, as it needs no loss.
    """

    async_safe = True

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.epoch = 0
        self.batches = 0
        self.failure: str | None = None

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self.batches, self.epoch, self.failure = 0, epoch, None

    def on_train_batch_begin(self, batch, logs=None) -> None:
        # On the training loop, but reading no loss, so the device is not waited for.
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        if self.failure:
            raise FloatingPointError(self.failure)

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.batches += 1  # read only as "none or some": a lost increment cannot matter
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt  # at once where Keras calls this on its loop
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.failure is None:
            self.failure = (
                f"The training loss became {float(loss)} at batch {batch + 1} of epoch "
                f"{self.epoch + 1} (stage {self.stage!r}); training stopped. Try a lower "
                "learning rate, check the images and labels for NaN or infinite values, or "
                "turn off mixed precision."
            )
            raise FloatingPointError(self.failure)  # run off the loop: raised again below

    def on_epoch_end(self, epoch, logs=None) -> None:
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        if self.failure:
            raise FloatingPointError(self.failure)
        if self.batches == 0:
            raise ValueError(
                f"The training data gave no batch in epoch {epoch + 1} (stage "
                f"{self.stage!r}): it is empty. Check the dataset, or give steps_per_epoch "
                "for one that repeats."
            )


def _element_spec(data: Any) -> Any:
    """What one batch holds: `tf.data`'s element spec, or arrays' shapes and dtypes.

    Arrays (an `(x, y)` pair, or a `keras.utils.PyDataset`'s first batch) are described by
    `np.ndarray`s of one example each (`len(shape)`, `shape[-1]` and `dtype` read alike).
    """
    spec = getattr(data, "element_spec", None)
    if spec is not None:
        return spec
    if isinstance(data, keras.utils.PyDataset):
        data = data[0]
    if not isinstance(data, tuple):
        return data
    return tuple(np.asarray(part[:1]) if part is not None else None for part in data)


def _rank(shape: Any) -> int | None:
    """A TensorShape's rank (None when unknown), or a tuple's length."""
    return shape.rank if hasattr(shape, "rank") else len(shape)


def _is_string(spec: Any) -> bool:
    dtype = spec.dtype
    return getattr(dtype, "name", "") == "string" or getattr(dtype, "kind", "") in ("U", "S")


def explain_graph_error(err: tf.errors.OpError) -> str:
    """The line of a TensorFlow runtime error that says what is wrong, with what to do.

    Args:
        err: the error `fit` raised.

    Example:
    >>> import tensorflow as tf
    >>> e = tf.errors.InvalidArgumentError(None, None, "Graph execution error:\\n\\nDetected at "
    ...     "node x\\nReceived a label value of 7 which is outside the valid range of [0, 3).")
    >>> explain_graph_error(e)  # doctest: +ELLIPSIS
    'Training failed: Received a label value of 7 which is outside the valid range of [0, 3)...'
    """
    lines = [line.strip() for line in str(getattr(err, "message", err)).splitlines()]
    useful = [
        line
        for line in lines
        if line and not line.startswith(("Graph execution error", "Detected at node", "File "))
    ]
    labels = [line for line in useful if "label value" in line or "is not in [0," in line]
    reason = labels[0] if labels else (useful[0] if useful else "")
    hint = " Labels must be class indices from 0 to the number of classes - 1." if labels else ""
    return f"Training failed: {reason}{hint}"
