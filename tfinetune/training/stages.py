"""Stages of fine-tuning: what each trains and at what rate, the default recipe, the history."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras

from tfinetune.models.specs import BackboneSpec
from tfinetune.training.freezing import layer_groups
from tfinetune.training.recipe import ALL_GROUPS, Stage
from tfinetune.training.schedules import SCHEDULES, Schedule

__all__ = ["ALL_GROUPS", "FineTuneHistory", "Stage", "check_stages", "default_stages"]


@dataclass
class FineTuneHistory:
    """The metrics of every epoch of every stage, numbered continuously.

    Args:
        history: metric name -> one value per epoch, across all stages.
        stages: `(name, first_epoch, end_epoch)` per stage; epochs are 0-based, end exclusive.
        optimizer: per stage, where its optimizer ended: `iterations` (steps taken) and
            `learning_rates` (each group's rate at the end).
        performance: the precision, XLA and distribution the run trained with.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    stages: list[tuple[str, int, int]] = field(default_factory=list)
    optimizer: list[dict] = field(default_factory=list)
    performance: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> FineTuneHistory:
        """The history `to_dict` wrote.

        Args:
            values: a `to_dict()` result (an empty dict gives an empty history).
        """
        stages = values.get("stages", [])
        return cls(
            {k: list(v) for k, v in values.get("history", {}).items()},
            [(s["name"], s["start"], s["end"]) for s in stages],
            [s.get("optimizer", {}) for s in stages],
            dict(values.get("performance", {})),
        )

    @property
    def epochs(self) -> int:
        """The number of epochs trained in all stages."""
        return self.stages[-1][2] if self.stages else 0

    def add(
        self,
        name: str,
        keras_history: keras.callbacks.History,
        earlier: dict[str, list[float]] | None = None,
        optimizer: dict | None = None,
    ) -> None:
        """Append one stage's Keras history.

        Args:
            name: the stage's name.
            keras_history: what `model.fit` returned.
            earlier: the stage's logs from before a resume, which come first.
            optimizer: where the stage's optimizer ended (see `optimizer` above).
        """
        start = self.epochs
        logs = {k: list(v) for k, v in (earlier or {}).items()}
        before = len(next(iter(logs.values()), []))
        for key, values in keras_history.history.items():
            logs.setdefault(key, [float("nan")] * before).extend(values)
        ran = max((len(v) for v in logs.values()), default=0)
        for key in set(self.history) | set(logs):
            values = self.history.setdefault(key, [float("nan")] * start)
            values.extend(float(v) for v in logs.get(key, [float("nan")] * ran))
        self.stages.append((name, start, start + ran))
        self.optimizer.append(dict(optimizer or {}))

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        optimizer = self.optimizer + [{}] * (len(self.stages) - len(self.optimizer))
        return {
            "history": self.history,
            "stages": [
                {"name": n, "start": s, "end": e, **({"optimizer": o} if o else {})}
                for (n, s, e), o in zip(self.stages, optimizer, strict=True)
            ],
            **({"performance": self.performance} if self.performance else {}),
        }


def default_stages(
    model: keras.Model,
    *,
    epochs: int = 5,
    freeze_epochs: int = 3,
    learning_rate: float = 1e-3,
    lr_mult: float = 10.0,
    train_groups: int | str = 5,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
    spec: BackboneSpec | None = None,
) -> list[Stage]:
    """The fastai-style recipe: a head stage, then the top groups with discriminative rates.

    Args:
        model: a classifier made by `build_classifier`.
        epochs: epochs of the unfrozen stage (0 skips it).
        freeze_epochs: epochs of the head stage (0 skips it).
        learning_rate: the head's rate in the head stage.
        lr_mult: the spread of the unfrozen stage's rates: its lowest group learns at
            `fine_tune_learning_rate / lr_mult`.
        train_groups: layer groups, from the top and counting the head, that the unfrozen
            stage trains (more than the model has, or `"all"`: all of them; 5: the head and
            the top 4 backbone blocks).
        fine_tune_learning_rate: the head's rate in the unfrozen stage (`learning_rate / 2`).
        schedule: each stage's schedule.
        spec: the backbone's spec (see `layer_groups`).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> [(s.name, s.train_groups) for s in default_stages(m, epochs=2, freeze_epochs=1,
    ...     learning_rate=1e-3, lr_mult=10, train_groups=3)]
    [('head', 1), ('fine-tune', 3)]
    """
    for name, value in (("epochs", epochs), ("freeze_epochs", freeze_epochs)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number, 0 or more. Received: {value!r}")
    if train_groups == ALL_GROUPS:
        train_groups = len(layer_groups(model, spec))
    if isinstance(train_groups, bool) or not isinstance(train_groups, int) or train_groups < 2:
        raise ValueError(
            "train_groups counts the layer groups the unfrozen stage trains, the head "
            f"included, so it must be 2 or more. Received: train_groups={train_groups!r}"
        )
    n_groups = len(layer_groups(model, spec))
    stages = []
    if freeze_epochs > 0:
        stages.append(Stage(freeze_epochs, 1, learning_rate, "head", schedule=schedule))
    if epochs > 0:
        top = learning_rate / 2 if fine_tune_learning_rate is None else fine_tune_learning_rate
        stages.append(
            Stage(
                epochs,
                min(train_groups, n_groups),
                top,
                "fine-tune",
                lr_mult=lr_mult,
                schedule=schedule,
            )
        )
    return stages


def check_stages(stages: Sequence[Stage], group_names: Sequence[str]) -> None:
    """Refuse stages that cannot train, naming the stage.

    Args:
        stages: the stages.
        group_names: the model's layer groups, bottom to top.

    Example:
    >>> check_stages([Stage(0, 1, 1e-3)], ["block1", "head"])
    Traceback (most recent call last):
    ValueError: A stage needs at least 1 epoch. Received: Stage(epochs=0, ...
    """
    if not stages:
        raise ValueError("Nothing to train: every stage has 0 epochs. Give epochs > 0.")
    for stage in stages:
        if not isinstance(stage.epochs, int) or stage.epochs < 1:
            raise ValueError(f"A stage needs at least 1 epoch. Received: {stage}")
        train_group_count(stage, group_names)
        lr = stage.learning_rate
        if isinstance(lr, Schedule):
            if stage.schedule != "constant":
                raise ValueError(
                    f"Give either a schedule object or a schedule name, not both: {stage}"
                )
        elif not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"The learning rate must be above 0. Received: {stage}")
        if stage.schedule not in SCHEDULES:
            raise ValueError(
                f"Unknown schedule {stage.schedule!r} in {stage}. Use one of "
                f"{', '.join(SCHEDULES)}."
            )
        if stage.lr_decay is not None and not 0.0 < stage.lr_decay <= 1.0:
            raise ValueError(f"lr_decay must be in (0, 1]. Received: {stage}")
        if stage.lr_decay is None and not stage.lr_mult >= 1.0:
            raise ValueError(f"lr_mult must be 1 or more. Received: {stage}")


def train_group_count(stage: Stage, group_names: Sequence[str]) -> int:
    """How many groups from the top a stage trains (`train_groups` is a count or a name).

    Args:
        stage: the stage.
        group_names: the model's layer groups, bottom to top.

    Example:
    >>> groups = ["block1", "block2", "head"]
    >>> [train_group_count(Stage(1, g, 1e-3), groups) for g in ("block2", "all", 100)]
    [2, 3, 3]
    """
    value, n_groups = stage.train_groups, len(group_names)
    if value == ALL_GROUPS and ALL_GROUPS not in group_names:
        return n_groups
    if isinstance(value, int) and not isinstance(value, bool) and value > n_groups:
        return n_groups  # more than there are: all of them
    if isinstance(value, str):
        if value not in group_names:
            close = difflib.get_close_matches(value, group_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"This model has no layer group {value!r}.{hint} Its groups, bottom to top, "
                f"are: {', '.join(group_names)}."
            )
        return n_groups - list(group_names).index(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n_groups:
        raise ValueError(
            f"A stage trains 1 or more layer groups of this model ({n_groups}), counted from "
            f"the top, 'all' of them, or names the lowest group to train "
            f"({', '.join(group_names)}). Received: {stage}"
        )
    return value
