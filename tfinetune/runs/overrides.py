"""The plain flags of `tfinetune train` as changes to an `Experiment`.

The same words work from Python: `apply_flags(Experiment(), {"data": "photos/", "epochs": 3})`
is `tfinetune train --data photos/ --epochs 3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfinetune.runs.experiment import ConfigError, Experiment
from tfinetune.runs.flags import STAGE_FLAGS, SWITCHES, field_flags

# Flag (its argparse `dest`) -> the experiment key it sets, from the fields' declarations.
FLAG_KEYS = {flag.dest: flag.key for flag in field_flags()}
FLAGS = (*FLAG_KEYS, *(f.dest for f in STAGE_FLAGS), *(f.dest for f in SWITCHES))


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
    positions = {"first": [1], "last": [last], "every": range(1, last + 1)}
    for flag in STAGE_FLAGS:
        if flag.dest in given:
            _, position, name = flag.key.split(".")
            values.update({f"stages.{n}.{name}": given[flag.dest] for n in positions[position]})
    if "learning_rate" in given and "fine_tune_learning_rate" not in given and last > 1:
        values[f"stages.{last}.learning_rate"] = given["learning_rate"] / 2
    for switch in SWITCHES:
        if given.get(switch.dest):
            values[switch.key] = switch.default
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
