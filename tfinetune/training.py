"""`fine_tune`: train the head on a frozen backbone, then unfreeze blocks from the top."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from tfinetune.freezing import freeze_to, layer_groups
from tfinetune.losses import resolve_loss
from tfinetune.optimizers import (
    OptimizerFactory,
    discriminative_optimizer,
    group_learning_rates,
    make_optimizer_factory,
    scaled_rates,
)
from tfinetune.schedules import (
    SCHEDULES,
    MomentumCycle,
    Schedule,
    make_schedule,
    one_cycle_momentum,
)


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
        schedule: "constant", "warmup_cosine" or "one_cycle" (which also cycles momentum),
            built over the stage's steps with `learning_rate` as the peak.
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
    base_lr: float,
    lr_mult: float,
    unfreeze_groups: int,
    fine_tune_lr: float | None = None,
    schedule: str = "constant",
) -> list[Stage]:
    """The fastai-style recipe: a head stage, then the top groups with discriminative rates.

    Args:
        model: a classifier made by `build_classifier`.
        epochs: epochs of the unfrozen stage (0 skips it).
        freeze_epochs: epochs of the head stage (0 skips it).
        base_lr: the head's rate in the head stage.
        lr_mult: the spread of the unfrozen stage's rates: its lowest group learns at
            `fine_tune_lr / lr_mult`.
        unfreeze_groups: backbone groups, from the top, that the unfrozen stage trains.
        fine_tune_lr: the head's rate in the unfrozen stage (default `base_lr / 2`).
        schedule: each stage's schedule.

    Example:
    >>> from tfinetune.models import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> [(s.name, s.train_groups) for s in default_stages(m, epochs=2, freeze_epochs=1,
    ...     base_lr=1e-3, lr_mult=10, unfreeze_groups=2)]
    [('head', 1), ('fine-tune', 3)]
    """
    for name, value in (("epochs", epochs), ("freeze_epochs", freeze_epochs)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number, 0 or more. Received: {value!r}")
    if not isinstance(unfreeze_groups, int) or unfreeze_groups < 1:
        raise ValueError(f"unfreeze_groups must be 1 or more. Received: {unfreeze_groups!r}")
    n_groups = len(layer_groups(model))
    stages = []
    if freeze_epochs > 0:
        stages.append(Stage(freeze_epochs, 1, base_lr, "head", schedule=schedule))
    if epochs > 0:
        train_groups = min(unfreeze_groups + 1, n_groups)
        top = base_lr / 2 if fine_tune_lr is None else fine_tune_lr
        stages.append(
            Stage(epochs, train_groups, top, "fine-tune", lr_mult=lr_mult, schedule=schedule)
        )
    return stages


def fine_tune(
    model: keras.Model,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset | None = None,
    *,
    epochs: int = 5,
    freeze_epochs: int = 3,
    base_lr: float = 1e-3,
    lr_mult: float = 10.0,
    unfreeze_groups: int = 4,
    fine_tune_lr: float | None = None,
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
    verbose: int | str = "auto",
) -> FineTuneHistory:
    """Fine-tune a classifier in stages, recompiling between them.

    The simple spelling, close to fastai's: `freeze_epochs` epochs train the head on a
    frozen backbone at `base_lr`; then the top `unfreeze_groups` backbone groups join the
    head for `epochs` epochs, the head at `fine_tune_lr` (default `base_lr / 2`) and lower
    groups more slowly, down to `fine_tune_lr / lr_mult` for the lowest (discriminative
    rates, one Keras optimizer per group in a `MultiOptimizer`). Or pass `stages`.

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
        base_lr: the head stage's learning rate.
        lr_mult: the spread of the unfrozen stage's rates (1: one rate for every group).
        unfreeze_groups: how many backbone layer groups, from the top, the second stage trains.
        fine_tune_lr: the head's rate in the unfrozen stage (default `base_lr / 2`).
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
        steps_per_epoch: batches per epoch, needed by schedules when the dataset does not
            know its length (otherwise it is counted with one pass).
        verbose: passed to `model.fit`.

    Example:
    >>> import numpy as np
    >>> from tfinetune.models import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> ds = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((8, 32, 32, 3), "float32"), np.array([0, 1] * 4))).batch(4)
    >>> h = fine_tune(m, ds, epochs=1, freeze_epochs=1, verbose=0)
    >>> [name for name, _, _ in h.stages]
    ['head', 'fine-tune']
    """
    if ema_momentum is not None and not 0.0 < ema_momentum < 1.0:
        raise ValueError(
            f"ema_momentum must be in (0, 1), or None for no averaging. Received: {ema_momentum!r}"
        )
    if stages is None:
        stages = default_stages(
            model,
            epochs=epochs,
            freeze_epochs=freeze_epochs,
            base_lr=base_lr,
            lr_mult=lr_mult,
            unfreeze_groups=unfreeze_groups,
            fine_tune_lr=fine_tune_lr,
            schedule=schedule,
        )
    groups = layer_groups(model)
    _check_stages(stages, [g.name for g in groups])
    if callable(optimizer):
        make_optimizer = optimizer
    else:
        options = dict(optimizer_options or {})
        if ema_momentum is not None:
            options.update(use_ema=True, ema_momentum=ema_momentum)
        if gradient_accumulation_steps:
            options["gradient_accumulation_steps"] = gradient_accumulation_steps
        make_optimizer = make_optimizer_factory(optimizer, **options)
    loss = resolve_loss(loss or default_loss(train_data), label_smoothing)
    if any(s.schedule != "constant" for s in stages) and steps_per_epoch is None:
        steps_per_epoch = count_batches(train_data)
    result = FineTuneHistory()
    for index, stage in enumerate(stages):
        n_trained = _train_groups(stage, [g.name for g in groups])
        trained = freeze_to(model, n_trained, train_bn=train_bn)[-n_trained:]
        steps = (steps_per_epoch or 1) * stage.epochs
        peak = make_schedule(stage.schedule, stage.learning_rate, steps)
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
        stage_callbacks = list(callbacks)
        if stage.schedule == "one_cycle":
            stage_callbacks.append(MomentumCycle(one_cycle_momentum(steps)))
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
                callbacks=stage_callbacks,
                class_weight=dict(class_weight) if class_weight else None,
                shuffle=False,  # datasets shuffle themselves; Keras ignores it for them anyway
                verbose=verbose,
            )
        result.add(stage.name or f"stage {index + 1}", history)
        if model.stop_training:
            break
    return result


def default_loss(dataset: tf.data.Dataset) -> str:
    """Sparse cross-entropy for class-index labels, categorical for one-hot (or mixed) rows.

    Args:
        dataset: a dataset of `(inputs, labels)` batches.

    Example:
    >>> default_loss(tf.data.Dataset.from_tensors((tf.zeros([2, 4]), tf.zeros([2, 3]))))
    'categorical_crossentropy'
    """
    labels = dataset.element_spec[1]
    if labels.shape.rank is not None and labels.shape.rank >= 2 and labels.shape[-1] != 1:
        return "categorical_crossentropy"
    return "sparse_categorical_crossentropy"


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
