"""`TrainingConfig` and `PerformanceConfig`: what every stage of `fine_tune` shares.

Plain data, importing neither Keras nor TensorFlow: an experiment file holds the same two
objects (`Experiment.training`, `Experiment.performance`) that `fine_tune` takes, so a value
means one thing in a TOML file, on the command line and in Python. Fields marked
`python_only` hold Python objects (a Keras loss, a callable) and stay out of experiment files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tfinetune.fields import option

# Keras optimizer names an experiment file may give (`keras.optimizers.get` takes each).
OPTIMIZERS = (
    "adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl",
    "lion", "adafactor",
)  # fmt: skip


@dataclass
class TrainingConfig:
    """What every stage shares.

    Args:
        train_bn: train BatchNormalization layers in unfrozen groups (else they stay frozen,
            in inference mode).
        label_smoothing: smooth the one-hot targets by this much.
        ema_momentum: keep an exponential moving average of the trained weights with this
            momentum (about `1 / (1 - m)` steps) and end each stage on it; 0 or None: the
            raw weights.
        optimizer: a Keras optimizer name, or (Python) `(learning_rate, name) -> optimizer`.
        optimizer_options: more arguments for the named optimizer (e.g. `weight_decay`).
        gradient_accumulation_steps: apply the summed gradients every this many steps (0 or
            1: every step).
        loss: the Keras loss (default: the head's, see `fine_tune`).
        metrics: the Keras metrics (default: the head's).
        class_weight: Keras's `class_weight` (e.g. `ImageData.class_weights()`).
        steps_per_epoch: batches per epoch, as in `model.fit`; also sizes the schedules.
        spec: the backbone's spec, for a loaded model whose backbone is not in the
            catalogue (see `layer_groups`).

    Example:
    >>> TrainingConfig(label_smoothing=0.1).ema_momentum
    0.9
    """

    train_bn: bool = option(False, "train BatchNormalization in unfrozen groups", flag="--train-bn")
    label_smoothing: float = option(
        0.0, "smooth one-label targets by this much", flag="--label-smoothing"
    )
    ema_momentum: float | None = option(
        0.9, "weight-average momentum; 0 trains without it", float, flag="--ema"
    )
    optimizer: Any = option(
        "adam", "the Keras optimizer of every group", str, flag="--optimizer", choices=OPTIMIZERS
    )
    optimizer_options: dict = option({}, "more arguments of the optimizer", python_only=True)
    gradient_accumulation_steps: int = option(
        0,
        "apply the summed gradients every N steps (0: every step)",
        flag="--gradient-accumulation-steps",
    )
    loss: Any = option(None, "the Keras loss (default: the head's)", python_only=True)
    metrics: Any = option(None, "the Keras metrics (default: the head's)", python_only=True)
    class_weight: Any = option(None, "Keras's class_weight", python_only=True)
    steps_per_epoch: int | None = option(None, "batches per epoch", python_only=True)
    spec: Any = option(None, "the backbone's spec, off the catalogue", python_only=True)


@dataclass
class PerformanceConfig:
    """How the work runs on the machine.

    Args:
        deterministic_ops: TensorFlow's op determinism (repeatable runs; Keras then compiles
            without XLA): "auto" (on a CPU only), True or False (the default: as the
            process has it); `fine_tune` turns it on when this resolves to True and never
            turns it off. Experiment files default to "auto".
        precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16": the layers compute
            in it (variables and the head's output stay float32).
        jit_compile: "auto", True or False: compile the training step with XLA ("auto":
            not while op determinism is on).
        strategy: a `tf.distribute` strategy or its name ("auto", "default", "mirrored",
            "multi_worker", "tpu"); "auto" in `fine_tune`: the one the model was built under.
            On the JAX backend `train_run` reads "multi_worker" as Keras's own data
            parallelism across processes (`tfinetune.training.processes`).

    Example:
    >>> PerformanceConfig().precision
    'auto'
    """

    deterministic_ops: str | bool = option(False, "repeatable TF ops: auto (CPU only), true, false")
    precision: str = option(
        "auto",
        "compute precision while training (auto: per device, see tfinetune doctor)",
        flag="--precision",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    jit_compile: str | bool = option(
        "auto", "XLA for the training step", flag="--jit-compile", choices=("auto", "true", "false")
    )
    strategy: Any = option(
        "auto",
        "tf.distribute strategy (auto: every local GPU, or a TPU; multi_worker on JAX: "
        "Keras's DataParallel across processes); batch_size is per replica",
        str,
        flag="--strategy",
        choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
    )


# The simple two-stage spelling, fastai's: `fine_tune(model, data, epochs=5)`.
SIMPLE_STAGES = (
    "epochs", "freeze_epochs", "learning_rate", "lr_mult", "train_groups",
    "fine_tune_learning_rate", "schedule",
)  # fmt: skip


def split_options(
    options: Mapping[str, Any],
    training: TrainingConfig | None = None,
    performance: PerformanceConfig | None = None,
) -> tuple[dict, TrainingConfig, PerformanceConfig]:
    """`fine_tune`'s keyword arguments sorted into the simple stages and the two configs.

    A keyword naming a field of `TrainingConfig` or `PerformanceConfig` replaces that field
    (`fine_tune(model, data, label_smoothing=0.1)` is `training=TrainingConfig(
    label_smoothing=0.1)`); the simple-stage keywords go to `default_stages`.

    Args:
        options: the keyword arguments.
        training: the training config they change (default: `TrainingConfig()`).
        performance: the performance config they change (default: `PerformanceConfig()`).

    Example:
    >>> simple, t, p = split_options({"epochs": 2, "label_smoothing": 0.1, "precision": "float32"})
    >>> simple, t.label_smoothing, p.precision
    ({'epochs': 2}, 0.1, 'float32')
    """
    training = training or TrainingConfig()
    performance = performance or PerformanceConfig()
    names = {
        "training": _field_names(TrainingConfig),
        "performance": _field_names(PerformanceConfig),
    }
    unknown = sorted(set(options) - set(SIMPLE_STAGES) - names["training"] - names["performance"])
    if unknown:
        raise TypeError(
            f"fine_tune() got unknown keyword argument(s) {', '.join(unknown)}. It takes "
            f"stages=[Stage(...)] or the simple stages ({', '.join(SIMPLE_STAGES)}), "
            f"training=TrainingConfig({', '.join(sorted(names['training']))}) and "
            f"performance=PerformanceConfig({', '.join(sorted(names['performance']))}); "
            "each of their fields may also be given by name."
        )
    pick = lambda group: {k: v for k, v in options.items() if k in names[group]}  # noqa: E731
    simple = {k: v for k, v in options.items() if k in SIMPLE_STAGES}
    return (
        simple,
        dataclasses.replace(training, **pick("training")),
        dataclasses.replace(performance, **pick("performance")),
    )


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
