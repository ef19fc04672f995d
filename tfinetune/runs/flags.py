"""A run's command-line flags, made from the experiment's fields: one declaration each.

A field declared with `option(..., flag="--name")` in `Experiment` or in a config object it
holds is a flag of `tfinetune train` (and of `distill` and `lr-find`): the flag's name, its
experiment key, its help, its default (the experiment's), its type and its choices all come
from that field, and `apply_flags` sets that key. Two kinds of flag set something other than
one key, and are declared here once: the stage flags (the first, the last or every stage)
and the two determinism switches. Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from tfinetune.runs.experiment import Experiment
from tfinetune.runs.schema import field_types, file_fields
from tfinetune.training.recipe import RECIPE


@dataclass(frozen=True)
class RunFlag:
    """One flag of a run: its names, the experiment key it sets, and how to read it.

    Args:
        names: the flag and its alternatives (`("--data", "--csv")`).
        key: the experiment key (`"model.dropout"`); for a stage flag, `stages.first.`,
            `stages.last.` or `stages.every.` and the stage field.
        help: what the value does.
        default: the experiment's default (None: the help says it); for a switch of
            `SWITCHES`, the value it sets.
        kind: the value's type: bool (a switch), int, float, str, list (of ints), or
            "groups" (a count of layer groups, or "all").
        choices: the values it takes, where they are a fixed set.
        at_least: a whole number's lowest value.

    Example:
    >>> [f for f in field_flags() if f.key == "model.dropout"][0].names
    ('--head-dropout',)
    """

    names: tuple[str, ...]
    key: str
    help: str
    default: Any
    kind: Any
    choices: tuple | None = None
    at_least: int = 0

    @property
    def dest(self) -> str:
        """The flag's name in Python (`--head-dropout`: `head_dropout`)."""
        return self.names[0].removeprefix("--").replace("-", "_")

    @property
    def section(self) -> str:
        """The experiment section it belongs to ("data", "model", "training", ...)."""
        head = self.key.split(".")[0]
        return "training" if head in ("seed", "stages") else head


def field_flags() -> tuple[RunFlag, ...]:
    """Every flag declared on an experiment field, in the experiment's order.

    Example:
    >>> [f.key for f in field_flags()][:2]
    ['seed', 'data.train']
    """
    experiment, found = Experiment(), []
    top_types = field_types(Experiment)
    for f in file_fields(Experiment):
        value = getattr(experiment, f.name)
        if dataclasses.is_dataclass(value):
            kinds = field_types(type(value))
            for sub in file_fields(type(value)):
                if sub.metadata.get("flag"):
                    default, key = getattr(value, sub.name), f"{f.name}.{sub.name}"
                    found.append(_flag(sub, key, default, kinds[sub.name]))
        elif f.metadata.get("flag"):
            found.append(_flag(f, f.name, value, top_types[f.name]))
    return tuple(found)


def _flag(f: dataclasses.Field, key: str, default: Any, hint: Any) -> RunFlag:
    names = f.metadata["flag"]
    names = (names,) if isinstance(names, str) else tuple(names)
    meta = f.metadata
    return RunFlag(
        names, key, meta["help"], default, _kind(hint), meta["choices"], meta["at_least"]
    )


def _kind(hint: Any) -> Any:
    """The type a flag's text is read as: the first of a union (float | None: float;
    str | list[str]: str), list for a list."""
    if typing.get_origin(hint) is list:
        return list
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


SCHEDULES = ("constant", "warmup_cosine", "one_cycle")  # training.schedules.SCHEDULES
_FIRST, _LAST = RECIPE[0], RECIPE[-1]

# fastai's spelling: the first stage trains the head, the last one the unfrozen backbone.
STAGE_FLAGS = (
    RunFlag(("--freeze-epochs",), "stages.first.epochs", "epochs of the head alone",
            _FIRST.epochs, int),
    RunFlag(("--epochs",), "stages.last.epochs",
            "epochs of the last stage, the backbone unfrozen", _LAST.epochs, int),
    RunFlag(("--train-groups",), "stages.last.train_groups",
            "groups trained in the last stage, counting the head (5: head + 4 blocks)",
            _LAST.train_groups, "groups"),
    RunFlag(("--learning-rate", "--lr"), "stages.first.learning_rate",
            "the head stage's learning rate (given alone, the last stage's is half of it)",
            _FIRST.learning_rate, float),
    RunFlag(("--lr-mult",), "stages.last.lr_mult",
            "the last stage's spread: head rate / lowest group's", _LAST.lr_mult, float),
    RunFlag(("--fine-tune-learning-rate",), "stages.last.learning_rate",
            "the head's rate in the last stage", _LAST.learning_rate, float),
    RunFlag(("--schedule",), "stages.every.schedule",
            "every stage's learning-rate schedule (default: constant for the head stage, "
            "warmup_cosine after)", None, str, SCHEDULES),
)  # fmt: skip

# Switches that set `performance.deterministic_ops` (default "auto": on a CPU only).
SWITCHES = (
    RunFlag(("--nondeterministic",), "performance.deterministic_ops",
            "allow nondeterministic TensorFlow ops on a CPU too (runs not repeatable)",
            False, bool),
    RunFlag(("--deterministic",), "performance.deterministic_ops",
            "deterministic TensorFlow ops on a GPU too: repeatable runs, but Keras then "
            "compiles without XLA (default: on a CPU only)", True, bool),
)  # fmt: skip
