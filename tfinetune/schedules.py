"""Learning-rate schedules for fine-tuning stages: warm-up then cosine, one-cycle, scaling.

Each is a Keras `LearningRateSchedule` (so optimizers evaluate it in the training step and
models save it), plus `MomentumCycle`, the callback that cycles an optimizer's momentum
alongside a one-cycle learning rate.
"""

from __future__ import annotations

import math

import keras
from keras import ops

Schedule = keras.optimizers.schedules.LearningRateSchedule

SCHEDULES = ("constant", "warmup_cosine", "one_cycle")


@keras.saving.register_keras_serializable(package="tfinetune")
class CosineCycle(Schedule):
    """A value that moves from `start` to `peak` and then to `end`, along half-cosines.

    The first `pct_start` of `total_steps` rise (or fall) from `start` to `peak`; the rest
    go from `peak` to `end`; after `total_steps` the value stays at `end`. One-cycle's
    learning rate and its momentum are both of this shape.

    Args:
        start: the value at step 0.
        peak: the value at the end of the first phase.
        end: the value at `total_steps` and after.
        total_steps: the length of the cycle in optimizer steps.
        pct_start: the fraction of the cycle spent reaching `peak`.

    Example:
    >>> s = CosineCycle(0.1, 1.0, 0.0, total_steps=10, pct_start=0.5)
    >>> [round(float(s(i)), 3) for i in (0, 5, 10, 20)]
    [0.1, 1.0, 0.0, 0.0]
    """

    def __init__(
        self, start: float, peak: float, end: float, total_steps: int, pct_start: float = 0.25
    ) -> None:
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer. Received: {total_steps!r}")
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"pct_start must be between 0 and 1. Received: {pct_start!r}")
        self.start, self.peak, self.end = float(start), float(peak), float(end)
        self.total_steps, self.pct_start = total_steps, float(pct_start)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = max(1.0, self.pct_start * self.total_steps)
        fall = max(1.0, self.total_steps - rise)
        first = ops.clip(step / rise, 0.0, 1.0)
        second = ops.clip((step - rise) / fall, 0.0, 1.0)

        def cosine(a, b, t):
            return b + (a - b) * 0.5 * (1.0 + ops.cos(math.pi * t))

        return ops.where(
            step < rise,
            cosine(self.start, self.peak, first),
            cosine(self.peak, self.end, second),
        )

    def get_config(self) -> dict:
        return {
            "start": self.start,
            "peak": self.peak,
            "end": self.end,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
        }


@keras.saving.register_keras_serializable(package="tfinetune")
class ScaledSchedule(Schedule):
    """Another schedule multiplied by a constant: how one layer group gets its own rate.

    Args:
        schedule: a `LearningRateSchedule`.
        factor: the multiplier.

    Example:
    >>> s = ScaledSchedule(one_cycle(1e-3, total_steps=100), factor=0.1)
    >>> f"{float(s(25)):.1e}"
    '1.0e-04'
    """

    def __init__(self, schedule: Schedule, factor: float) -> None:
        self.schedule, self.factor = schedule, float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self) -> dict:
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "factor": self.factor,
        }

    @classmethod
    def from_config(cls, config: dict) -> ScaledSchedule:
        schedule = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(schedule, config["factor"])


def one_cycle(
    max_lr: float,
    total_steps: int,
    *,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> CosineCycle:
    """The one-cycle learning rate: warm up from `max_lr / div_factor`, then anneal far below.

    Args:
        max_lr: the highest learning rate, reached after `pct_start` of the steps.
        total_steps: the stage's optimizer steps.
        pct_start: the fraction of the steps spent warming up.
        div_factor: the starting rate is `max_lr / div_factor`.
        final_div_factor: the final rate is the starting rate divided by this.

    Example:
    >>> s = one_cycle(1e-2, total_steps=100)
    >>> f"{float(s(0)):.0e} {float(s(25)):.0e}"
    '4e-04 1e-02'
    """
    start = max_lr / div_factor
    return CosineCycle(start, max_lr, start / final_div_factor, total_steps, pct_start)


def warmup_cosine(
    peak_lr: float, total_steps: int, *, warmup_fraction: float = 0.1, final_fraction: float = 0.0
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from zero to `peak_lr`, then cosine decay (Keras's `CosineDecay`).

    Args:
        peak_lr: the rate at the end of the warm-up.
        total_steps: the stage's optimizer steps, warm-up included.
        warmup_fraction: the fraction of the steps spent warming up.
        final_fraction: the final rate as a fraction of `peak_lr`.

    Example:
    >>> s = warmup_cosine(1e-3, total_steps=100)
    >>> [f"{float(s(i)):.1e}" for i in (0, 5, 10, 100)]
    ['0.0e+00', '5.0e-04', '1.0e-03', '0.0e+00']
    """
    warmup = round(warmup_fraction * total_steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup),
        alpha=final_fraction,
        warmup_target=peak_lr,
        warmup_steps=warmup,
    )


def make_schedule(kind: str, peak_lr: float, total_steps: int) -> float | Schedule:
    """The schedule named `kind` ("constant", "warmup_cosine" or "one_cycle") for a stage.

    Args:
        kind: one of `SCHEDULES`.
        peak_lr: the stage's (highest) learning rate.
        total_steps: the stage's optimizer steps.

    Example:
    >>> make_schedule("constant", 1e-3, 10)
    0.001
    """
    if kind == "constant":
        return peak_lr
    if kind == "warmup_cosine":
        return warmup_cosine(peak_lr, total_steps)
    if kind == "one_cycle":
        return one_cycle(peak_lr, total_steps)
    raise ValueError(f"Unknown schedule {kind!r}. Use one of {', '.join(SCHEDULES)}.")


def one_cycle_momentum(
    total_steps: int, *, pct_start: float = 0.25, high: float = 0.95, low: float = 0.85
) -> CosineCycle:
    """One-cycle's momentum: high while the rate is low, low while the rate peaks.

    Args:
        total_steps: the stage's optimizer steps.
        pct_start: as for `one_cycle`.
        high: the momentum at the start and the end.
        low: the momentum when the learning rate peaks.

    Example:
    >>> round(float(one_cycle_momentum(100)(25)), 4)
    0.85
    """
    return CosineCycle(high, low, high, total_steps, pct_start)


class _MomentumVariable(keras.Variable):
    """A variable for a momentum that is never 0, so SGD's Python-side `!= 0` check passes."""

    def __ne__(self, other):
        if isinstance(other, (int, float)) and other == 0:
            return True
        return super().__ne__(other)

    __hash__ = keras.Variable.__hash__


class MomentumCycle(keras.callbacks.Callback):
    """Set the optimizer's momentum (`momentum` for SGD, `beta_1` for the Adam family) each step.

    Optimizers take momentum as a number, fixed when the training step is traced, so during
    `fit` this puts a variable in its place (read by the traced step, not tracked as an
    optimizer weight) and puts the number back at the end. Saving the optimizer in between
    (ModelCheckpoint) records the number.

    Args:
        schedule: the momentum at each optimizer step, e.g. `one_cycle_momentum(...)`.

    Example:
    >>> import numpy as np
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> m.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
    >>> cb = MomentumCycle(one_cycle_momentum(8))
    >>> _ = m.fit(np.ones((16, 2)), np.ones(16), batch_size=4, epochs=1, callbacks=[cb], verbose=0)
    >>> [round(v, 2) for v in cb.values], m.optimizer.momentum
    ([0.95, 0.9, 0.85, 0.86], 0.9)
    """

    ATTRIBUTES = ("beta_1", "momentum")

    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        self.schedule = schedule
        self.values: list[float] = []
        self._saved: list[tuple[object, str, float, object]] = []

    def _optimizers(self) -> list:
        opt = self.model.optimizer
        opt = getattr(opt, "inner_optimizer", opt)
        return list(getattr(opt, "optimizers", [opt]))

    def on_train_begin(self, logs=None) -> None:
        self._saved = []
        if not self.model.optimizer.built:  # building reads momentum as a number
            self.model.optimizer.build(self.model.trainable_variables)
        for opt in self._optimizers():
            for attribute in self.ATTRIBUTES:
                value = getattr(opt, attribute, None)
                if isinstance(value, (int, float)) and value > 0:
                    variable = _MomentumVariable(value, dtype="float32", trainable=False)
                    original_config = opt.get_config

                    def get_config(original=original_config, name=attribute, number=value):
                        return {**original(), name: number}

                    # object.__setattr__: do not let Keras track it as an optimizer weight.
                    object.__setattr__(opt, attribute, variable)
                    object.__setattr__(opt, "get_config", get_config)
                    self._saved.append((opt, attribute, value, variable))
        # Trace the step afresh so that it reads the variables.
        self.model.make_train_function(force=True)
        if not self._saved:
            raise ValueError(
                f"MomentumCycle needs an optimizer with momentum or beta_1 above 0; "
                f"{[type(o).__name__ for o in self._optimizers()]} have none."
            )

    def on_train_batch_begin(self, batch, logs=None) -> None:
        step = self._saved[0][0].iterations
        value = float(ops.convert_to_numpy(self.schedule(step)))
        for _, _, _, variable in self._saved:
            variable.assign(value)
        self.values.append(value)

    def on_train_end(self, logs=None) -> None:
        for opt, attribute, value, _ in self._saved:
            object.__setattr__(opt, attribute, value)
            opt.__dict__.pop("get_config", None)
        self._saved = []
        self.model.train_function = None  # the next fit traces with the numbers again
