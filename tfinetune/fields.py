"""`option`: a dataclass field with its help text, the one declaration of a configurable value.

The config objects of every step (`HeadOptions`, `TrainingConfig`, `PerformanceConfig`,
`Stage`) and the run's own sections are dataclasses of such fields: experiment files,
`tfinetune init`, the command-line flags and the checks all read them from here.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(
    default: Any,
    help: str,
    toml: Any = None,
    python_only: bool = False,
    flag: str | tuple[str, ...] | None = None,
    choices: tuple | None = None,
    at_least: int = 0,
) -> Any:
    """A config field with its help text: the one declaration of a run option.

    `tfinetune init` writes the help above the key, and where `flag` is given,
    `tfinetune.runs.flags` makes the command-line flag from the same field: its name, key,
    help, default, type and choices.

    Args:
        default: the default value (a list is copied for each object).
        help: one line saying what the value does.
        toml: the type an experiment file may give, where the annotation allows more.
        python_only: the value is a Python object, never read from or written to a file.
        flag: the command-line flag(s) that set it (`"--ema"`; two: alternatives).
        choices: the values the flag takes, where they are a fixed set.
        at_least: a whole-number flag's lowest value (a file may still hold 0 for "the
            default", such as `data.image_size`).

    Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Head:
    ...     dropout: float = option(0.2, "dropout before the output", flag="--dropout")
    >>> dataclasses.fields(Head)[0].metadata["flag"], Head().dropout
    ('--dropout', 0.2)
    """
    metadata = {"help": help, "python_only": python_only, "flag": flag, "choices": choices,
                "at_least": at_least}  # fmt: skip
    if toml:
        metadata["toml"] = toml
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)
