"""An experiment's values checked before any data is read, each error naming its key.

The file's loader (`tfinetune.runs.experiment`) checks keys and types; this checks what the
values may be: names from a fixed set, numbers in their range. A run then fails in its
first second, saying `model.pooling is 'mean'` rather than a Keras message after the scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tfinetune.data.audio import AUDIO_AUGMENT
from tfinetune.data.augment import LAYERS, POLICIES
from tfinetune.data.images import RESIZE_MODES
from tfinetune.models.heads import POOLINGS, TASKS
from tfinetune.runs.experiment import ConfigError, Experiment
from tfinetune.training.distribution import STRATEGIES
from tfinetune.training.options import OPTIMIZERS
from tfinetune.training.performance import PRECISIONS
from tfinetune.training.schedules import SCHEDULES

SWITCH = (lambda v: v in ("auto", "true", "false", True, False)), "auto, true or false"


def _one_of(choices) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(str(c) for c in choices if c != "")


def _between(low: float, high: float, closed: bool = False) -> tuple[Callable, str]:
    if closed:
        return (lambda v: low <= v <= high), f"from {low} to {high}"
    return (lambda v: low <= v < high), f"at least {low} and below {high}"


def _at_least(low: float) -> tuple[Callable, str]:
    return (lambda v: v >= low), f"{low} or more"


def _above(low: float) -> tuple[Callable, str]:
    return (lambda v: v > low), f"above {low}"


def _augment(value: Any) -> bool:
    names = [value] if isinstance(value, str) else list(value)
    known = set(POLICIES) | set(LAYERS) | set(AUDIO_AUGMENT)
    return all(isinstance(n, str) and n in known for n in names)


def _rules(experiment: Experiment) -> Iterator[tuple[str, Any, Callable, str]]:
    """(key, value, test, what the value may be) for every checked value."""
    d, m, t = experiment.data, experiment.model, experiment.training
    yield "data.task", d.task, *_one_of(("", *TASKS))
    yield "data.val_split", d.val_split, *_between(0.0, 1.0)
    yield "data.image_size", d.image_size, *_at_least(0)
    yield "data.clip_seconds", d.clip_seconds, *_at_least(0.0)
    yield "data.batch_size", d.batch_size, *_at_least(1)
    augment = "a policy (" + ", ".join(POLICIES) + ") or layer names"
    yield "data.augment", d.augment, _augment, augment
    yield "data.resize", d.resize, *_one_of(RESIZE_MODES)
    yield "model.pooling", m.pooling, *_one_of(POOLINGS)
    yield "model.dropout", m.dropout, *_between(0.0, 1.0)
    yield "model.hidden_units", m.hidden_units, lambda v: all(u >= 1 for u in v), "sizes >= 1"
    for i, stage in enumerate(experiment.stages, 1):
        yield f"stages.{i}.epochs", stage.epochs, *_at_least(0)
        groups = (lambda v: v == "all" or (isinstance(v, int) and v >= 1)), "1 or more, or all"
        yield f"stages.{i}.train_groups", stage.train_groups, *groups
        yield f"stages.{i}.learning_rate", stage.learning_rate, *_above(0.0)
        yield f"stages.{i}.lr_mult", stage.lr_mult, *_at_least(1.0)
        if stage.lr_decay is not None:
            yield f"stages.{i}.lr_decay", stage.lr_decay, *_between(0.0, 1.0, closed=True)
        yield f"stages.{i}.schedule", stage.schedule, *_one_of(SCHEDULES)
    yield "training.label_smoothing", t.label_smoothing, *_between(0.0, 1.0)
    yield "training.ema_momentum", t.ema_momentum, *_between(0.0, 1.0)
    yield "training.optimizer", t.optimizer, *_one_of(OPTIMIZERS)
    yield "training.gradient_accumulation_steps", t.gradient_accumulation_steps, *_at_least(0)
    yield "distill.temperature", experiment.distill.temperature, *_above(0.0)
    yield "distill.alpha", experiment.distill.alpha, *_between(0.0, 1.0, closed=True)
    p = experiment.performance
    yield "performance.precision", p.precision, *_one_of(PRECISIONS)
    yield "performance.jit_compile", p.jit_compile, *SWITCH
    yield "performance.deterministic_ops", p.deterministic_ops, *SWITCH
    yield "performance.strategy", p.strategy, *_one_of(STRATEGIES)
    yield "export.top_k", experiment.export.top_k, *_at_least(1)


def check_values(experiment: Experiment) -> None:
    """Raise a `ConfigError` naming the first value out of its range or set.

    Args:
        experiment: the experiment about to run.

    Example:
    >>> e = Experiment()
    >>> e.model.pooling = "mean"
    >>> check_values(e)
    Traceback (most recent call last):
    ...
    tfinetune.runs.schema.ConfigError: model.pooling is 'mean': it must be one of avg, \
max, avgmax, attention.
    """
    for key, value, test, expected in _rules(experiment):
        if isinstance(value, str) and key.startswith("performance."):
            value = value.lower()
        try:
            fine = test(value)
        except TypeError:  # a number compared with text, say
            fine = False
        if not fine:
            raise ConfigError(f"{key} is {value!r}: it must be {expected}.")
