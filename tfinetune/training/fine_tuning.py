"""`fine_tune`: train the head on a frozen backbone, then unfreeze blocks from the top."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from tfinetune.models.specs import BackboneSpec
from tfinetune.training.freezing import freeze_to, layer_groups
from tfinetune.training.losses import default_loss, resolve_loss
from tfinetune.training.optimizers import (
    OptimizerFactory,
    discriminative_optimizer,
    group_learning_rates,
    make_optimizer_factory,
    scaled_rates,
)
from tfinetune.training.schedules import SCHEDULES, Schedule, make_schedule


@dataclass(frozen=True)
class Stage:
    """One stage of fine-tuning.

    The top group (the head) learns at `learning_rate`; lower groups learn more slowly with
    `lr_mult` (a geometric spread: the lowest trained group at `learning_rate / lr_mult`) or
    `lr_decay` (each group at `lr_decay` times the rate of the group above).

    Args:
        epochs: how many epochs the stage trains.
        train_groups: how many layer groups, from the top, train (1: the head only), or the
            name of the lowest group to train (that group and every group above it).
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


@dataclass
class FineTuneHistory:
    """The metrics of every epoch of every stage, numbered continuously.

    Args:
        history: metric name -> one value per epoch, across all stages.
        stages: `(name, first_epoch, end_epoch)` per stage; epochs are 0-based, end exclusive.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    stages: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """The number of epochs trained in all stages."""
        return self.stages[-1][2] if self.stages else 0

    def add(self, name: str, keras_history: keras.callbacks.History) -> None:
        """Append one stage's Keras history."""
        start = self.epochs
        ran = len(next(iter(keras_history.history.values()), []))
        for key in set(self.history) | set(keras_history.history):
            values = self.history.setdefault(key, [float("nan")] * start)
            values.extend(float(v) for v in keras_history.history.get(key, [float("nan")] * ran))
        self.stages.append((name, start, start + ran))

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return {
            "history": self.history,
            "stages": [{"name": n, "start": s, "end": e} for n, s, e in self.stages],
        }


def default_stages(
    model: keras.Model,
    *,
    epochs: int,
    freeze_epochs: int,
    learning_rate: float,
    lr_mult: float,
    train_groups: int,
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
            stage trains (more than the model has: all of them).
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


def fine_tune(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset | None = None,
    *,
    epochs: int = 5,
    freeze_epochs: int = 3,
    learning_rate: float = 1e-3,
    lr_mult: float = 10.0,
    train_groups: int = 5,
    fine_tune_learning_rate: float | None = None,
    schedule: str = "constant",
    stages: Sequence[Stage] | None = None,
    train_bn: bool = False,
    optimizer: str | OptimizerFactory = "adam",
    optimizer_options: Mapping[str, Any] | None = None,
    ema_momentum: float | None = 0.9,
    gradient_accumulation_steps: int | None = None,
    label_smoothing: float = 0.0,
    loss: str | keras.losses.Loss | None = None,
    metrics: Sequence[str | keras.metrics.Metric] = ("accuracy",),
    callbacks: Sequence[keras.callbacks.Callback] = (),
    class_weight: Mapping[int, float] | None = None,
    steps_per_epoch: int | None = None,
    spec: BackboneSpec | None = None,
    verbose: int | str = "auto",
) -> FineTuneHistory:
    """Fine-tune a classifier in stages, recompiling between them.

    The simple spelling, close to fastai's: `freeze_epochs` epochs train the head on a
    frozen backbone at `learning_rate`; then the top `train_groups` layer groups (the head
    and the top backbone blocks) train for `epochs` epochs, the head at
    `fine_tune_learning_rate` (default `learning_rate / 2`) and lower groups more slowly,
    down to `fine_tune_learning_rate / lr_mult` for the lowest (discriminative rates, one
    Keras optimizer per group in a `MultiOptimizer`). Or pass `stages`.

    BatchNormalization layers stay frozen, and so in inference mode, unless `train_bn`.
    Callbacks see every epoch of every stage, numbered continuously.

    With `ema_momentum`, the optimizer keeps an exponential moving average of the trained
    weights (Keras's `use_ema`) and each stage ends with the model holding those averages:
    on small datasets this removes much of the step-to-step noise of the final weights.
    Per-epoch validation metrics are computed on the raw weights.

    Args:
        model: a classifier made by `build_classifier`.
        train_data: a dataset of `(pixels, labels)` batches.
        val_data: an optional validation dataset of the same form.
        epochs: epochs of the unfrozen stage (0 skips it).
        freeze_epochs: epochs of the head-only stage (0 skips it).
        learning_rate: the head stage's learning rate.
        lr_mult: the spread of the unfrozen stage's rates (1: one rate for every group).
        train_groups: how many layer groups, from the top and counting the head, the second
            stage trains (5: the head and the top 4 backbone blocks).
        fine_tune_learning_rate: the head's rate in the unfrozen stage (`learning_rate / 2`).
        schedule: "constant", "warmup_cosine" or "one_cycle", for both stages.
        stages: an explicit list of `Stage`s, instead of the arguments above.
        train_bn: train BatchNormalization layers in unfrozen groups.
        optimizer: a Keras optimizer name, or `(learning_rate, name) -> optimizer`.
        optimizer_options: more arguments for the named optimizer (e.g. `weight_decay`).
        ema_momentum: the momentum of the weight average (about `1 / (1 - m)` steps), or
            None for the raw weights.
        gradient_accumulation_steps: apply the summed gradients every this many steps.
        label_smoothing: smooth the one-hot targets by this much (sparse or one-hot labels).
        loss: the Keras loss; by default cross-entropy for the labels the data has: sparse
            for class indices, categorical for one-hot or mixed rows (MixUp, CutMix). For
            multi-label data pass "binary_crossentropy".
        metrics: the Keras metrics.
        callbacks: Keras callbacks, shared by every stage.
        class_weight: Keras's `class_weight` (e.g. `ImageData.class_weights()`).
        steps_per_epoch: batches per epoch, as in `model.fit` (needed for a dataset that
            repeats forever); also sizes the schedules, which otherwise count one pass.
        spec: the backbone's spec, for a loaded classifier whose backbone is not in the
            catalogue (see `layer_groups`).
        verbose: passed to `model.fit`.

    Example:
    >>> import numpy as np
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 32, 32, 3), "float32"), np.array([0, 1] * 4))).batch(4)
    >>> h = fine_tune(m, ds, epochs=1, freeze_epochs=1, verbose=0)
    >>> [name for name, _, _ in h.stages]
    ['head', 'fine-tune']
    """
    if stages is None:
        stages = default_stages(
            model,
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            learning_rate=learning_rate,
            lr_mult=lr_mult,
            train_groups=train_groups,
            fine_tune_learning_rate=fine_tune_learning_rate,
            schedule=schedule,
            spec=spec,
        )
    groups = layer_groups(model, spec)
    _check_stages(stages, [g.name for g in groups])
    make_optimizer = _optimizer_factory(
        optimizer, optimizer_options, ema_momentum, gradient_accumulation_steps
    )
    loss = resolve_loss(loss or default_loss(train_data), label_smoothing)
    if steps_per_epoch is not None and (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or steps_per_epoch < 1
    ):
        raise ValueError(f"steps_per_epoch must be a positive int. Received: {steps_per_epoch!r}")
    schedule_steps = steps_per_epoch
    if any(s.schedule != "constant" for s in stages) and steps_per_epoch is None:
        schedule_steps = count_batches(train_data)
    result = FineTuneHistory()
    for index, stage in enumerate(stages):
        n_trained = _train_groups(stage, [g.name for g in groups])
        trained = freeze_to(model, n_trained, train_bn=train_bn, spec=spec)[-n_trained:]
        peak = make_schedule(
            stage.schedule, stage.learning_rate, (schedule_steps or 1) * stage.epochs
        )
        factors = group_learning_rates(
            len(trained), 1.0, lr_mult=stage.lr_mult, decay=stage.lr_decay
        )
        model.compile(
            optimizer=discriminative_optimizer(
                trained, scaled_rates(peak, factors), make_optimizer
            ),
            loss=loss,
            metrics=list(metrics),
        )
        start = result.epochs
        with warnings.catch_warnings():
            # tfinetune's datasets skip unreadable files, so their length is unknown until
            # the first epoch ends; Keras warns about that, harmlessly, once per stage.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            history = model.fit(
                train_data,
                validation_data=val_data,
                initial_epoch=start,
                epochs=start + stage.epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=list(callbacks),
                class_weight=dict(class_weight) if class_weight else None,
                shuffle=False,  # datasets shuffle themselves; Keras ignores it for them anyway
                verbose=verbose,
            )
        result.add(stage.name or f"stage {index + 1}", history)
        if model.stop_training:
            break
    return result


def _optimizer_factory(
    optimizer: str | OptimizerFactory,
    options: Mapping[str, Any] | None,
    ema_momentum: float | None,
    gradient_accumulation_steps: int | None,
) -> OptimizerFactory:
    """The function that makes each group's optimizer, with weight averaging and accumulation."""
    if ema_momentum is not None and not 0.0 < ema_momentum < 1.0:
        raise ValueError(
            f"ema_momentum must be in (0, 1), or None for no averaging. Received: {ema_momentum!r}"
        )
    if callable(optimizer):
        return optimizer
    options = dict(options or {})
    if ema_momentum is not None:
        options.update(use_ema=True, ema_momentum=ema_momentum)
    if gradient_accumulation_steps:
        options["gradient_accumulation_steps"] = gradient_accumulation_steps
    return make_optimizer_factory(optimizer, **options)


def count_batches(dataset: tf.data.Dataset) -> int:
    """The number of batches in one pass: the dataset's cardinality, or one pass to count.

    Args:
        dataset: a finite dataset.

    Example:
    >>> count_batches(tf.data.Dataset.range(10).batch(4))
    3
    """
    known = int(dataset.cardinality())
    if known == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "The dataset repeats forever, so an epoch has no length: give steps_per_epoch."
        )
    if known >= 0:
        return known
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _check_stages(stages: Sequence[Stage], group_names: Sequence[str]) -> None:
    """Refuse stages that cannot train, naming the stage."""
    if not stages:
        raise ValueError("Nothing to train: every stage has 0 epochs. Give epochs > 0.")
    for stage in stages:
        if not isinstance(stage.epochs, int) or stage.epochs < 1:
            raise ValueError(f"A stage needs at least 1 epoch. Received: {stage}")
        _train_groups(stage, group_names)
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


def _train_groups(stage: Stage, group_names: Sequence[str]) -> int:
    """How many groups from the top a stage trains (`train_groups` is a count or a name)."""
    value, n_groups = stage.train_groups, len(group_names)
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
            f"A stage trains 1 to {n_groups} layer groups of this model, counted from the top, "
            f"or names the lowest group to train ({', '.join(group_names)}). Received: {stage}"
        )
    return value
