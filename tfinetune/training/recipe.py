"""`Stage`, one step of fine-tuning, and `RECIPE`, the stages `tfinetune train` uses.

Plain data, importing neither Keras nor TensorFlow, so experiment files and the command line
use the same objects without the start-up cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tfinetune.fields import option

if TYPE_CHECKING:
    from tfinetune.training.schedules import Schedule


@dataclass(frozen=True)
class Stage:
    """One stage of fine-tuning, in `fine_tune(stages=...)` and in experiment files alike.

    The top group (the head) learns at `learning_rate`; lower groups learn more slowly with
    `lr_mult` (a geometric spread: the lowest trained group at `learning_rate / lr_mult`) or
    `lr_decay` (each group at `lr_decay` times the rate of the group above).

    Args:
        epochs: how many epochs the stage trains.
        train_groups: how many layer groups, from the top, train (1: the head only; more
            than the model has, or `"all"`: every group), or the name of the lowest group to
            train (that group and every group above it).
        learning_rate: the top group's learning rate: a float, or a Keras
            `LearningRateSchedule` used as given (then `schedule` must be "constant").
        name: a label for histories and plots.
        lr_mult: the head's rate divided by the lowest trained group's rate (1: one rate).
        lr_decay: instead of `lr_mult`, the ratio of each group's rate to the next one up.
        schedule: "constant", "warmup_cosine" or "one_cycle", built over the stage's steps
            with `learning_rate` as the peak.

    Example:
    >>> Stage(3, "all", 1e-4, "fine-tune", lr_mult=10).train_groups
    'all'
    """

    epochs: int = option(1, "epochs of this stage (0 skips it)")
    train_groups: int | str = option(1, "layer groups trained, from the top (1: the head; all)")
    learning_rate: float | Schedule = option(1e-3, "the head's (top group's) learning rate", float)
    name: str = option("", "a label for the progress, history and plots")
    lr_mult: float = option(1.0, "head rate / lowest trained group's rate")
    lr_decay: float | None = option(None, "instead of lr_mult: each group's rate / the next one up")
    schedule: str = option("constant", "constant, warmup_cosine or one_cycle")


ALL_GROUPS = "all"

# The recipe `tfinetune train` uses for images, chosen by cross-validation on training data
# only (benchmarks/README.md): the head alone for 4 epochs, then every group for 10 with
# warm-up and cosine decay, lower groups up to 10x slower. Use it with label smoothing
# RECIPE_LABEL_SMOOTHING, `ema_momentum=0.9` (fine_tune's default) and a model built with
# `mirror=True`: `fine_tune(model, train, val, stages=RECIPE,
# training=TrainingConfig(label_smoothing=RECIPE_LABEL_SMOOTHING))`.
RECIPE = (
    Stage(4, 1, 1e-3, "head"),
    Stage(10, ALL_GROUPS, 2e-4, "fine-tune", lr_mult=10.0, schedule="warmup_cosine"),
)
RECIPE_LABEL_SMOOTHING = 0.1
