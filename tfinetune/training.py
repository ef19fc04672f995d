"""`fine_tune`: train the head on a frozen backbone, then unfreeze blocks from the top."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from tfinetune.freezing import freeze_to, layer_groups


@dataclass(frozen=True)
class Stage:
    """One stage of fine-tuning.

    Args:
        epochs: how many epochs the stage trains.
        train_groups: how many layer groups, from the top, train (1: the head only).
        learning_rate: the stage's learning rate (a float or a Keras schedule).
        name: a label for histories and plots.
    """

    epochs: int
    train_groups: int
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
    name: str = ""


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
) -> list[Stage]:
    """The fastai-style recipe: a head stage, then the top groups at a lower learning rate."""
    n_groups = len(layer_groups(model))
    stages = []
    if freeze_epochs > 0:
        stages.append(Stage(freeze_epochs, 1, base_lr, "head"))
    if epochs > 0:
        train_groups = min(unfreeze_groups + 1, n_groups)
        stages.append(Stage(epochs, train_groups, base_lr / lr_mult, "fine-tune"))
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
    stages: Sequence[Stage] | None = None,
    train_bn: bool = False,
    ema_momentum: float | None = 0.9,
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy",
    metrics: Sequence[str | keras.metrics.Metric] = ("accuracy",),
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> FineTuneHistory:
    """Fine-tune a classifier in stages, recompiling between them.

    By default: `freeze_epochs` epochs train the head on a frozen backbone at `base_lr`,
    then the top `unfreeze_groups` backbone groups join the head for `epochs` epochs at
    `base_lr / lr_mult`. BatchNormalization layers stay in inference mode unless
    `train_bn`. Callbacks see every epoch of every stage, numbered continuously.

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
        lr_mult: how much lower the unfrozen stage's learning rate is.
        unfreeze_groups: how many backbone layer groups, from the top, the second stage trains.
        stages: an explicit list of `Stage`s, instead of the arguments above.
        train_bn: train BatchNormalization layers in unfrozen groups.
        ema_momentum: the momentum of the weight average (about `1 / (1 - m)` steps), or
            None for the raw weights.
        loss: the Keras loss.
        metrics: the Keras metrics.
        callbacks: Keras callbacks, shared by every stage.
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
        )
    _check_stages(stages, len(layer_groups(model)))
    result = FineTuneHistory()
    for index, stage in enumerate(stages):
        freeze_to(model, stage.train_groups, train_bn=train_bn)
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=stage.learning_rate,
                use_ema=ema_momentum is not None,
                ema_momentum=0.99 if ema_momentum is None else ema_momentum,
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
                callbacks=list(callbacks),
                shuffle=False,  # datasets shuffle themselves; Keras ignores it for them anyway
                verbose=verbose,
            )
        result.add(stage.name or f"stage {index + 1}", history)
        if model.stop_training:
            break
    return result


def _check_stages(stages: Sequence[Stage], n_groups: int) -> None:
    """Refuse stages that cannot train, naming the stage."""
    if not stages:
        raise ValueError("Nothing to train: every stage has 0 epochs. Give epochs > 0.")
    for stage in stages:
        if not isinstance(stage.epochs, int) or stage.epochs < 1:
            raise ValueError(f"A stage needs at least 1 epoch. Received: {stage}")
        if not 1 <= stage.train_groups <= n_groups:
            raise ValueError(
                f"A stage can train 1 to {n_groups} layer groups of this model. Received: {stage}"
            )
        lr = stage.learning_rate
        if isinstance(lr, (int, float)) and not lr > 0:
            raise ValueError(f"The learning rate must be above 0. Received: {stage}")
