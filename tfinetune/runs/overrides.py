"""The plain flags of `tfinetune train` as changes to an `Experiment`.

The same words work from Python: `apply_flags(Experiment(), {"data": "photos/", "epochs": 3})`
is `tfinetune train --data photos/ --epochs 3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfinetune.runs.experiment import ConfigError, Experiment

# Flag (its argparse `dest`) -> the experiment key it sets.
FLAG_KEYS = {
    "data": "data.train",
    "val_data": "data.val",
    "task": "data.task",
    "label_delim": "data.label_delim",
    "path_column": "data.path_column",
    "label_column": "data.label_column",
    "text_column": "data.text_column",
    "clip_seconds": "data.clip_seconds",
    "image_size": "data.image_size",
    "batch_size": "data.batch_size",
    "val_split": "data.val_split",
    "augment": "data.augment",
    "resize": "data.resize",
    "balance_classes": "data.balance_classes",
    "backbone": "model.backbone",
    "weights": "model.weights",
    "pooling": "model.pooling",
    "hidden_units": "model.hidden_units",
    "head_dropout": "model.dropout",
    "head_batchnorm": "model.batch_norm",
    "teacher": "distill.teacher",
    "temperature": "distill.temperature",
    "alpha": "distill.alpha",
    "train_bn": "training.train_bn",
    "label_smoothing": "training.label_smoothing",
    "ema": "training.ema_momentum",
    "seed": "seed",
    "precision": "performance.precision",
    "jit_compile": "performance.jit_compile",
    "strategy": "performance.strategy",
}
# The fastai-style stage flags: the first stage is the head stage, the last the unfrozen one.
FIRST_STAGE = {"freeze_epochs": "epochs", "learning_rate": "learning_rate"}
LAST_STAGE = {
    "epochs": "epochs",
    "train_groups": "train_groups",
    "lr_mult": "lr_mult",
    "fine_tune_learning_rate": "learning_rate",
}
FLAGS = (*FLAG_KEYS, *FIRST_STAGE, *LAST_STAGE, "schedule", "nondeterministic", "deterministic")


def apply_flags(experiment: Experiment, flags: Mapping[str, Any]) -> Experiment:
    """The experiment with the given flags' values (flags left out keep the experiment's).

    `freeze_epochs` and `learning_rate` set the first stage; `epochs`, `train_groups`,
    `lr_mult` and `fine_tune_learning_rate` the last; `learning_rate` alone also sets the
    last stage's rate to half of it (as `fine_tune` does); `schedule` sets every stage.

    Args:
        experiment: the experiment to change.
        flags: flag name (`epochs`, `head_dropout`, ...) -> value; None means "not given".

    Example:
    >>> e = apply_flags(Experiment(), {"learning_rate": 0.01, "epochs": 2, "weights": "none"})
    >>> [(s.epochs, s.learning_rate) for s in e.stages], e.model.weights
    ([(4, 0.01), (2, 0.005)], 'none')
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise ConfigError(f"Unknown flag(s) {unknown}. Known: {', '.join(FLAGS)}.")
    given = {k: v for k, v in flags.items() if v is not None}
    values: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        if flag in given:
            values[key] = _config_value(flag, given[flag])
    last = len(experiment.stages)
    for flags_here, number in ((FIRST_STAGE, 1), (LAST_STAGE, last)):
        for flag, key in flags_here.items():
            if flag in given:
                values[f"stages.{number}.{key}"] = given[flag]
    if "learning_rate" in given and "fine_tune_learning_rate" not in given and last > 1:
        values[f"stages.{last}.learning_rate"] = given["learning_rate"] / 2
    if "schedule" in given:
        values.update({f"stages.{n}.schedule": given["schedule"] for n in range(1, last + 1)})
    if given.get("nondeterministic"):
        values["performance.deterministic_ops"] = False
    if given.get("deterministic"):
        values["performance.deterministic_ops"] = True
    return experiment.with_values(values)


def _config_value(flag: str, value: Any) -> Any:
    """A flag's value as the experiment file spells it."""
    if flag == "weights":
        return "none" if str(value).lower() == "none" else str(value)
    if flag == "augment" and isinstance(value, str) and "," in value:
        return value.split(",")
    if flag in ("data", "val_data", "teacher"):
        return str(value)
    if flag == "jit_compile" and str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    return value
