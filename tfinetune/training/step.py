"""One stage's training step: which groups train, at which rates, compiled for `fit`.

`fine_tune` compiles each stage with `compile_stage`; `benchmarks/gpu_train_step.py` times
the same step against a plain Keras `compile`. Nothing here imports TensorFlow, so the step
runs on every Keras backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from tfinetune.models.specs import BackboneSpec
from tfinetune.training.freezing import freeze_to
from tfinetune.training.optimizers import (
    OptimizerFactory,
    discriminative_optimizer,
    group_learning_rates,
    make_optimizer_factory,
    scaled_rates,
)
from tfinetune.training.performance import Performance, loss_scaled
from tfinetune.training.recipe import Stage
from tfinetune.training.schedules import make_schedule
from tfinetune.training.stages import train_group_count


def compile_stage(
    model: keras.Model,
    stage: Stage,
    groups: Sequence[str],
    *,
    loss: Any,
    metrics: Sequence[Any],
    make_optimizer: OptimizerFactory,
    total_steps: int,
    performance: Performance,
    net: keras.Model | None = None,
    train_bn: bool = False,
    spec: BackboneSpec | None = None,
) -> keras.optimizers.Optimizer:
    """Freeze all but the stage's top groups and compile `model` with their optimizer.

    Args:
        model: the model `fit` trains (a classifier, or a `Distiller` of two).
        stage: the stage: its groups, rate, spread of rates and schedule.
        groups: the names of `net`'s layer groups, bottom to top.
        loss: the Keras loss.
        metrics: the Keras metrics.
        make_optimizer: `(learning_rate, name) -> optimizer`, see `optimizer_factory`.
        total_steps: the optimizer steps of the whole stage (sizes the schedule).
        performance: the precision and XLA policy; float16 wraps the optimizer for loss
            scaling, and `jit_compile` is passed to `compile`.
        net: the model whose layers train (default `model`; a `Distiller`'s student).
        train_bn: train BatchNormalization layers in unfrozen groups.
        spec: the backbone's spec, for a backbone not in the catalogue.

    Returns:
        The compiled optimizer (a `MultiOptimizer` when the groups' rates differ).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> from tfinetune.training.freezing import layer_groups
    >>> from tfinetune.training.performance import resolve_performance
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> names = [g.name for g in layer_groups(m)]
    >>> opt = compile_stage(m, Stage(1, 3, 1e-3, lr_mult=10), names,
    ...                     loss="sparse_categorical_crossentropy", metrics=["accuracy"],
    ...                     make_optimizer=optimizer_factory("adam"), total_steps=10,
    ...                     performance=resolve_performance("float32", False))
    >>> type(opt).__name__, len(m.trainable_weights) < len(m.weights)
    ('MultiOptimizer', True)
    """
    net = model if net is None else net
    n_trained = train_group_count(stage, list(groups))
    trained = freeze_to(net, n_trained, train_bn=train_bn, spec=spec)
    peak = make_schedule(stage.schedule, stage.learning_rate, total_steps)
    factors = group_learning_rates(n_trained, 1.0, lr_mult=stage.lr_mult, decay=stage.lr_decay)
    optimizer = discriminative_optimizer(
        trained[-n_trained:], scaled_rates(peak, factors), make_optimizer
    )
    optimizer = loss_scaled(optimizer, performance)
    model.compile(
        optimizer=optimizer, loss=loss, metrics=list(metrics),
        jit_compile=performance.jit_compile,
    )  # fmt: skip
    return optimizer


def optimizer_factory(
    optimizer: str | OptimizerFactory = "adam",
    options: Mapping[str, Any] | None = None,
    ema_momentum: float | None = None,
    gradient_accumulation_steps: int | None = None,
) -> OptimizerFactory:
    """The function that makes each group's optimizer, with weight averaging and accumulation.

    Args:
        optimizer: a Keras optimizer name, or `(learning_rate, name) -> optimizer` (used as
            given).
        options: more arguments for the named optimizer (e.g. `weight_decay`).
        ema_momentum: keep an exponential moving average of the weights with this momentum
            (Keras's `use_ema`), or None.
        gradient_accumulation_steps: apply the summed gradients every this many steps.

    Example:
    >>> make = optimizer_factory("adam", ema_momentum=0.9)
    >>> opt = make(1e-3, "head")
    >>> opt.use_ema, opt.ema_momentum
    (True, 0.9)
    """
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


def record_xla(model: keras.Model, performance: Performance, recorded: dict) -> bool:
    """Whether Keras compiled `model`'s step with XLA, stored in `recorded["jit_compile"]`.

    Read back from the compiled model, not from the request: Keras turns XLA off when
    TensorFlow op determinism is on, or when a layer cannot be compiled. A request it
    declined is warned about once per run.

    Args:
        model: a compiled model.
        performance: the policy that was asked for.
        recorded: the run's performance record (updated in place).

    Example:
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> m.compile(loss="mse", jit_compile=False)
    >>> facts = {}
    >>> record_xla(m, Performance("float32", False, "cpu", "as given"), facts), facts
    (False, {'jit_compile': False})
    """
    used = bool(model.jit_compile)
    if performance.jit_compile and not used and recorded.get("jit_compile", True):
        warnings.warn(
            "XLA was asked for, but Keras compiled the training step without it: TensorFlow "
            "op determinism is on (a run's performance.deterministic_ops; --nondeterministic "
            "turns it off), or a layer does not support XLA.",
            stacklevel=3,
        )
    recorded["jit_compile"] = used
    return used


def ends_on_averages(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether `fit` with this optimizer ends with the weights' moving averages swapped in.

    Args:
        optimizer: a compiled optimizer (possibly loss-scaled, or a `MultiOptimizer`, whose
            own `use_ema` is False while its inner optimizers average).

    Example:
    >>> ends_on_averages(keras.optimizers.Adam(use_ema=True))
    True
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    return any(getattr(o, "use_ema", False) for o in getattr(optimizer, "optimizers", [optimizer]))


class OwnWeights(keras.callbacks.Callback):
    """After `fit`, gives every trained weight a device buffer of its own (JAX only).

    A `fit` with weight averaging ends by assigning each moving average to its weight; on
    the JAX backend the two then hold one buffer, and the next `fit` fails ("Attempt to
    donate the same buffer twice"), since Keras's JAX step donates its state. A copy ends
    the sharing: `fine_tune`'s stages, a `fit` after `fine_tune` and resumed runs all work.

    Example:
    >>> import numpy as np
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> m.compile(optimizer=keras.optimizers.SGD(use_ema=True), loss="mse")
    >>> h = m.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0, callbacks=[OwnWeights()])
    >>> h = m.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0, callbacks=[OwnWeights()])
    """

    def on_train_end(self, logs: dict | None = None) -> None:
        if keras.config.backend() != "jax":
            return
        for weight in self.model.trainable_weights:
            weight.assign(keras.ops.copy(weight.value))
