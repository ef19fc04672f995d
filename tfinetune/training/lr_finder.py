"""The learning-rate finder: an exponential sweep of the rate, then suggestions from the curve.

The model trains for up to `num_steps` batches while the learning rate grows exponentially
from `start_lr` to `end_lr` (Keras's `ExponentialDecay` with a rate above 1). The loss of
each batch is smoothed, the sweep stops once it diverges, and the model's weights and its
compiled optimizer, loss and metrics are put back exactly as they were.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from tfinetune.training.curves import plot_lr_finder
from tfinetune.training.losses import default_loss, resolve_loss
from tfinetune.training.optimizers import make_optimizer_factory


@dataclass
class LRFinderResult:
    """The curve of a learning-rate sweep and the rates it suggests.

    Args:
        learning_rates: the rate of each step.
        losses: each step's training loss.
        smoothed: the exponentially smoothed, bias-corrected losses.
        suggestions: `{"valley": rate, "steepest": rate}` (fastai's names): the valley is
            a point two-thirds of the way down the longest descent; steepest is where the
            smoothed loss falls fastest against log(rate).
        diverged: whether the sweep stopped early because the loss blew up.
    """

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    diverged: bool = False

    def plot(self, path: str | os.PathLike):
        """Plot the smoothed loss against the learning rate, marking the suggestions."""
        return plot_lr_finder(self.learning_rates, self.smoothed, path, self.suggestions)

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return {
            "learning_rates": self.learning_rates,
            "losses": self.losses,
            "smoothed": self.smoothed,
            "suggestions": self.suggestions,
            "diverged": self.diverged,
        }


def smooth_losses(losses: Sequence[float], beta: float = 0.98) -> list[float]:
    """Exponentially smoothed losses, bias-corrected so the first values are not pulled to 0.

    Args:
        losses: raw per-step losses.
        beta: the smoothing factor.

    Example:
    >>> [round(v, 6) for v in smooth_losses([2.0, 2.0, 5.0], beta=0.5)]
    [2.0, 2.0, 3.714286]
    """
    average, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta**i))
    return out


def suggest(learning_rates: Sequence[float], smoothed: Sequence[float]) -> dict[str, float]:
    """The valley and steepest-descent rates of a smoothed loss curve.

    Only the part of the curve up to its minimum counts. The valley is two-thirds of the way
    along the longest run of steps over which the loss keeps falling (a longest decreasing
    subsequence, so that noise does not break it); steepest is where the loss falls fastest
    against log(rate), past the sweep's first tenth.

    Args:
        learning_rates: increasing rates.
        smoothed: the smoothed loss at each rate.

    Example:
    >>> lrs = np.logspace(-6, 0, 60)
    >>> s = suggest(lrs, list((np.log10(lrs) + 2) ** 2))
    >>> 1e-4 < s["valley"] < 1e-2
    True
    """
    lrs = np.asarray(learning_rates, dtype="float64")
    values = np.asarray(smoothed, dtype="float64")
    if len(lrs) < 4:
        raise ValueError(f"A finder curve needs at least 4 points; it has {len(lrs)}.")
    end = int(np.nanargmin(values)) + 1
    lrs, values = lrs[:end], values[:end]
    if end < 3:
        return {"valley": float(lrs[0]), "steepest": float(lrs[0])}
    # Longest strictly decreasing subsequence, by dynamic programming (n is a few hundred).
    length = np.ones(end, dtype=int)
    start = np.arange(end)
    for j in range(end):
        for i in range(j):
            if values[i] > values[j] and length[i] + 1 > length[j]:
                length[j], start[j] = length[i] + 1, start[i]
    last = int(np.argmax(length))
    first = int(start[last])
    valley = first + (2 * (last - first)) // 3
    slopes = np.gradient(values, np.log(lrs))
    # Not in the first tenth of the sweep (as fastai): the smoothed loss there averages a
    # few steps only, and its noise outran the real descent (step 1 was "steepest").
    low = max(1, len(learning_rates) // 10)
    low = low if low < end - 1 else 1
    steepest = low + int(np.argmin(slopes[low : end - 1])) if end > 3 else 1
    return {"valley": float(lrs[valley]), "steepest": float(lrs[steepest])}


class _LossRecorder(keras.callbacks.Callback):
    """Record each step's loss and stop when the smoothed loss diverges."""

    def __init__(self, diverge: float, beta: float) -> None:
        super().__init__()
        self.diverge, self.beta = diverge, beta
        self.losses: list[float] = []
        self._mean_so_far = self._average = 0.0
        self._best = math.inf
        self.diverged = False

    def on_train_batch_end(self, batch, logs=None) -> None:
        # Keras reports the running mean of the epoch's losses; recover this step's.
        mean = float(logs["loss"])
        step = len(self.losses) + 1
        loss = mean * step - self._mean_so_far * (step - 1)
        self._mean_so_far = mean
        self.losses.append(loss)
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta**step)
        self._best = min(self._best, smoothed)
        if not math.isfinite(loss) or smoothed > self.diverge * self._best:
            self.diverged = True
            self.model.stop_training = True


def lr_find(
    model: keras.Model,
    data: tf.data.Dataset,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    optimizer: str = "adam",
    loss: str | keras.losses.Loss | None = None,
    label_smoothing: float = 0.0,
    diverge: float = 4.0,
    beta: float = 0.98,
    verbose: int | str = "auto",
) -> LRFinderResult:
    """Sweep the learning rate exponentially over `num_steps` batches and suggest a rate.

    The model trains whatever is trainable now (e.g. only the head after `freeze`). Its
    weights, and its compiled optimizer (with the optimizer's state), loss and metrics, are
    restored afterwards, bit for bit.

    Args:
        model: a Keras model, compiled or not.
        data: a dataset of `(inputs, labels)` batches with at least `num_steps` batches.
        start_lr: the first rate.
        end_lr: the last rate, if the loss has not diverged before.
        num_steps: the number of batches (a few hundred at most is plenty).
        optimizer: a Keras optimizer name.
        loss: the loss; by default the model's compiled loss, else cross-entropy for the
            labels the data has.
        label_smoothing: as in `fine_tune`.
        diverge: stop when the smoothed loss exceeds this multiple of its minimum.
        beta: the loss smoothing factor.
        verbose: passed to `model.fit`.

    Example:
    >>> import numpy as np
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> x = np.random.default_rng(0).normal(size=(320, 4)).astype("float32")
    >>> ds = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int32"))).batch(8)
    >>> r = lr_find(m, ds, num_steps=40, verbose=0)
    >>> sorted(r.suggestions)
    ['steepest', 'valley']
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(
            f"Need 0 < start_lr < end_lr. Received: start_lr={start_lr!r}, end_lr={end_lr!r}"
        )
    if not isinstance(num_steps, int) or not 4 <= num_steps <= 1000:
        raise ValueError(
            f"num_steps must be a whole number from 4 to 1000. Received: {num_steps!r}"
        )
    available = int(data.cardinality())
    if 0 <= available < num_steps:
        raise ValueError(
            f"The dataset has {available} batches but the finder needs num_steps={num_steps}. "
            f"Use a smaller num_steps or batch size, or repeat the dataset (data.repeat())."
        )
    weights = [w.numpy().copy() for w in model.weights]
    compiled = None
    if model.compiled:  # put back afterwards, with the very optimizer object and its state
        compiled = keras.saving.deserialize_keras_object(model.get_compile_config())
        compiled["optimizer"] = model.optimizer
    if loss is None:
        loss = compiled["loss"] if compiled else default_loss(data)
    schedule = keras.optimizers.schedules.ExponentialDecay(
        start_lr, decay_steps=num_steps - 1, decay_rate=end_lr / start_lr
    )
    model.compile(
        optimizer=make_optimizer_factory(optimizer)(schedule, "lr_finder"),
        loss=resolve_loss(loss, label_smoothing),
    )
    recorder = _LossRecorder(diverge, beta)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            model.fit(
                data.take(num_steps), epochs=1, callbacks=[recorder], shuffle=False, verbose=verbose
            )
    finally:
        for variable, value in zip(model.weights, weights, strict=True):
            variable.assign(value)
        if compiled is not None:
            model.compile(**compiled)
        model.stop_training = False
    steps = len(recorder.losses)
    if steps < num_steps and not recorder.diverged:
        raise ValueError(
            f"The dataset ran out after {steps} batches; the finder needs num_steps="
            f"{num_steps}. Use a smaller num_steps or batch size, or repeat the dataset."
        )
    lrs = [float(schedule(i)) for i in range(steps)]
    smoothed = smooth_losses(recorder.losses, beta)
    return LRFinderResult(
        learning_rates=lrs,
        losses=recorder.losses,
        smoothed=smoothed,
        suggestions=suggest(lrs, smoothed) if steps >= 4 else {},
        diverged=recorder.diverged,
    )
