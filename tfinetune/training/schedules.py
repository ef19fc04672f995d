"""Learning-rate schedules for fine-tuning stages: warm-up then cosine, one-cycle, scaling.

Each is a Keras `LearningRateSchedule`, so optimizers evaluate it in the training step and
models save it. (One-cycle cycles the learning rate only: Keras optimizers take momentum as
a number fixed when the step is traced, and there is no public way to schedule it.)
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
    learning_rate: float,
    total_steps: int,
    *,
    pct_start: float = 0.25,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> CosineCycle:
    """The one-cycle learning rate: warm up from `learning_rate / div_factor`, then anneal.

    Args:
        learning_rate: the highest learning rate, reached after `pct_start` of the steps.
        total_steps: the stage's optimizer steps.
        pct_start: the fraction of the steps spent warming up.
        div_factor: the starting rate is `learning_rate / div_factor`.
        final_div_factor: the final rate is the starting rate divided by this.

    Example:
    >>> s = one_cycle(1e-2, total_steps=100)
    >>> f"{float(s(0)):.0e} {float(s(25)):.0e}"
    '4e-04 1e-02'
    """
    start = learning_rate / div_factor
    return CosineCycle(start, learning_rate, start / final_div_factor, total_steps, pct_start)


def warmup_cosine(
    learning_rate: float,
    total_steps: int,
    *,
    warmup_fraction: float = 0.1,
    final_fraction: float = 0.0,
) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from zero to `learning_rate`, then cosine decay (Keras's `CosineDecay`).

    Args:
        learning_rate: the rate at the end of the warm-up.
        total_steps: the stage's optimizer steps, warm-up included.
        warmup_fraction: the fraction of the steps spent warming up.
        final_fraction: the final rate as a fraction of `learning_rate`.

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
        warmup_target=learning_rate,
        warmup_steps=warmup,
    )


def make_schedule(kind: str, learning_rate: float, total_steps: int) -> float | Schedule:
    """The schedule named `kind` ("constant", "warmup_cosine" or "one_cycle") for a stage.

    Args:
        kind: one of `SCHEDULES`.
        learning_rate: the stage's (highest) learning rate.
        total_steps: the stage's optimizer steps.

    Example:
    >>> make_schedule("constant", 1e-3, 10)
    0.001
    """
    if kind == "constant":
        return learning_rate
    if kind == "warmup_cosine":
        return warmup_cosine(learning_rate, total_steps)
    if kind == "one_cycle":
        return one_cycle(learning_rate, total_steps)
    raise ValueError(f"Unknown schedule {kind!r}. Use one of {', '.join(SCHEDULES)}.")
