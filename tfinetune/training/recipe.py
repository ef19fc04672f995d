"""`Stage`, one step of fine-tuning, and `RECIPE`, the stages `tfinetune train` uses.

Plain data, importing neither Keras nor TensorFlow, so experiment files and the command line
use the same objects without the start-up cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tfinetune.training.schedules import Schedule


@dataclass(frozen=True)
class Stage:
    """One stage of fine-tuning.

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
    """

    epochs: int
    train_groups: int | str
    learning_rate: float | Schedule
    name: str = ""
    lr_mult: float = 1.0
    lr_decay: float | None = None
    schedule: str = "constant"


ALL_GROUPS = "all"

# The recipe `tfinetune train` uses for images, chosen by cross-validation on training data
# only (benchmarks/README.md): the head alone for 4 epochs, then every group for 10 with
# warm-up and cosine decay, lower groups up to 10x slower. Use it with
# `label_smoothing=RECIPE_LABEL_SMOOTHING`, `ema_momentum=0.9` (fine_tune's default) and a
# model built with `mirror=True`: `fine_tune(model, train, val, stages=RECIPE,
# label_smoothing=RECIPE_LABEL_SMOOTHING)`.
RECIPE = (
    Stage(4, 1, 1e-3, "head"),
    Stage(10, ALL_GROUPS, 2e-4, "fine-tune", lr_mult=10.0, schedule="warmup_cosine"),
)
RECIPE_LABEL_SMOOTHING = 0.1
