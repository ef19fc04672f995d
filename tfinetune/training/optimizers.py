"""Discriminative learning rates: one Keras optimizer per layer group, in a `MultiOptimizer`.

Keras 3 has `keras.optimizers.MultiOptimizer`, which hands each variable to the optimizer an
`OptimizerMap` names for its path. Each trained group gets its own optimizer (same class and
options, its own learning rate or scaled schedule), so `model.fit`, mixed-precision loss
scaling (`LossScaleOptimizer` wraps the `MultiOptimizer`), `tf.distribute`, EMA and gradient
accumulation all stay Keras's own, and the optimizer saves and loads with the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from tfinetune.training.freezing import LayerGroup
from tfinetune.training.schedules import ScaledSchedule, Schedule

OptimizerFactory = Callable[[Any, str], keras.optimizers.Optimizer]


def group_learning_rates(
    n: int, learning_rate: float, *, lr_mult: float = 1.0, decay: float | None = None
) -> list[float]:
    """Learning-rate factors for `n` trained groups, bottom to top, relative to the top one.

    Either a geometric spread in which the bottom group learns `lr_mult` times more slowly
    than the top one (fastai's `slice(lo, hi)`), or layer-wise `decay` (each group learns
    `decay` times the rate of the one above it).

    Args:
        n: how many groups train.
        learning_rate: the top group's (the head's) learning rate.
        lr_mult: the top rate divided by the bottom rate (1: the same rate everywhere).
        decay: instead of `lr_mult`, the ratio between neighbouring groups, in (0, 1].

    Example:
    >>> [f"{r:.0e}" for r in group_learning_rates(3, 1e-3, lr_mult=100)]
    ['1e-05', '1e-04', '1e-03']
    >>> [f"{r:.2e}" for r in group_learning_rates(3, 1e-3, decay=0.5)]
    ['2.50e-04', '5.00e-04', '1.00e-03']
    """
    if not learning_rate > 0:
        raise ValueError(f"The learning rate must be above 0. Received: {learning_rate!r}")
    if decay is not None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1]. Received: {decay!r}")
        return [learning_rate * decay ** (n - 1 - i) for i in range(n)]
    if not lr_mult >= 1.0:
        raise ValueError(
            f"lr_mult is how many times more slowly the lowest trained group learns than the "
            f"head, so it must be at least 1. Received: {lr_mult!r}"
        )
    if n == 1:
        return [learning_rate]
    return [learning_rate / lr_mult ** ((n - 1 - i) / (n - 1)) for i in range(n)]


def make_optimizer_factory(name: str = "adam", **options: Any) -> OptimizerFactory:
    """A function `(learning_rate, name) -> optimizer` for a Keras optimizer class and options.

    Args:
        name: a Keras optimizer name ("adam", "adamw", "sgd", ...).
        **options: its other arguments (`weight_decay`, `use_ema`, `momentum`, ...).

    Example:
    >>> make = make_optimizer_factory("sgd", momentum=0.9)
    >>> opt = make(0.1, "head")
    >>> type(opt).__name__, opt.name, opt.momentum
    ('SGD', 'head', 0.9)
    """
    try:
        cls = type(keras.optimizers.get(name))
    except ValueError as err:
        raise ValueError(
            f"Unknown optimizer {name!r}: use a Keras optimizer name such as 'adam', "
            f"'adamw' or 'sgd'."
        ) from err

    def make(learning_rate: Any, opt_name: str) -> keras.optimizers.Optimizer:
        return cls(learning_rate=learning_rate, name=opt_name, **options)

    return make


def discriminative_optimizer(
    groups: Sequence[LayerGroup],
    learning_rates: Sequence[float | Schedule],
    make_optimizer: OptimizerFactory,
) -> keras.optimizers.Optimizer:
    """One optimizer per distinct learning rate of the trained groups, as a `MultiOptimizer`.

    Groups with equal rates share an optimizer; when every rate is the same this returns
    that single optimizer. The top group's optimizer is the default one, so variables that
    belong to no group (none in `build_classifier` models) learn at the head's rate.

    Args:
        groups: the trained layer groups, bottom to top.
        learning_rates: one learning rate (a float or a schedule) per group.
        make_optimizer: `(learning_rate, name) -> optimizer`, see `make_optimizer_factory`.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> from tfinetune.training.freezing import freeze_to
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> top = freeze_to(m, 3)[-3:]
    >>> opt = discriminative_optimizer(top, [1e-5, 1e-4, 1e-3], make_optimizer_factory("sgd"))
    >>> {name: f"{rate:.0e}" for name, rate in learning_rates_of(opt).items()}
    {'lr_block3': '1e-05', 'lr_block4': '1e-04', 'lr_head': '1e-03'}
    """
    if len(groups) != len(learning_rates):
        raise ValueError(
            f"Give one learning rate per trained group: {len(groups)} groups "
            f"({[g.name for g in groups]}), {len(learning_rates)} rates."
        )
    by_rate: dict[Any, list[LayerGroup]] = {}
    for group, rate in zip(groups, learning_rates, strict=True):
        by_rate.setdefault(_rate_key(rate), []).append(group)
    top_key = _rate_key(learning_rates[-1])
    rates = {_rate_key(r): r for r in learning_rates}

    def name_of(key: Any) -> str:
        return "lr_" + "_".join(g.name for g in by_rate[key])

    default = make_optimizer(rates[top_key], name_of(top_key))
    if len(by_rate) == 1:
        return default
    optimizer_map = keras.optimizers.OptimizerMap(default)
    seen: dict[str, str] = {}
    for key, key_groups in by_rate.items():
        if key == top_key:
            continue
        optimizer = make_optimizer(rates[key], name_of(key))
        for group in key_groups:
            for variable in _trainable_variables(group):
                if variable.path in seen:
                    raise ValueError(
                        f"Two trainable variables share the path {variable.path!r} (groups "
                        f"{seen[variable.path]!r} and {group.name!r}), so they cannot get "
                        f"different learning rates. Give their layers unique names."
                    )
                seen[variable.path] = group.name
                optimizer_map[re.escape(variable.path)] = optimizer
    return keras.optimizers.MultiOptimizer(optimizer_map)


def scaled_rates(learning_rate: float | Schedule, factors: Sequence[float]) -> list:
    """The stage's rate (a float or a schedule) times each group's factor.

    Args:
        learning_rate: the top group's rate or schedule.
        factors: each group's rate relative to the top group's.

    Example:
    >>> scaled_rates(1e-3, [0.5, 1.0])
    [0.0005, 0.001]
    """
    if isinstance(learning_rate, Schedule):
        return [learning_rate if f == 1.0 else ScaledSchedule(learning_rate, f) for f in factors]
    return [learning_rate * f for f in factors]


def learning_rates_of(optimizer: keras.optimizers.Optimizer) -> Mapping[str, float]:
    """The current learning rate of each inner optimizer, by name.

    Args:
        optimizer: a compiled model's optimizer (possibly loss-scaled or a `MultiOptimizer`).

    Example:
    >>> learning_rates_of(keras.optimizers.SGD(0.5, name="head"))
    {'head': 0.5}
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    inner = getattr(optimizer, "optimizers", [optimizer])
    return {o.name: float(keras.ops.convert_to_numpy(o.learning_rate)) for o in inner}


def _rate_key(rate: float | Schedule) -> Any:
    return id(rate) if isinstance(rate, Schedule) else float(rate)


def _trainable_variables(group: LayerGroup) -> list:
    return [v for layer in group.layers for v in layer.trainable_weights]
