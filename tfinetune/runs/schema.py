"""Typed dataclasses from and to plain values (what a TOML file holds), every key checked.

The machinery under `Experiment`: a nested dataclass is built from nested dicts and lists,
each value checked against its field's type (or the `toml` type its `option` gives), unknown
keys named with the close match, dotted keys (`stages.2.epochs`) set, and fields marked
`python_only` left out both ways.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """An experiment file or override with an unknown key or a value of the wrong type."""


def merged(defaults: Any, given: Any) -> Any:
    """`given` over `defaults`, table by table (a list, such as the stages, replaces).

    Args:
        defaults: the default values (nested dicts).
        given: the values given.

    Example:
    >>> merged({"a": {"x": 1, "y": 2}, "s": [1, 2]}, {"a": {"y": 3}, "s": [4]})
    {'a': {'x': 1, 'y': 3}, 's': [4]}
    """
    if isinstance(defaults, dict) and isinstance(given, dict):
        return {**defaults, **{k: merged(defaults.get(k), v) for k, v in given.items()}}
    return given


def plain(obj: Any) -> Any:
    """Dataclasses as dicts, without their Python-only fields.

    Args:
        obj: a dataclass, a list of them, or a plain value.

    Example:
    >>> from tfinetune.training.options import TrainingConfig
    >>> sorted(plain(TrainingConfig()))[:2]
    ['ema_momentum', 'gradient_accumulation_steps']
    """
    if dataclasses.is_dataclass(obj):
        return {f.name: plain(getattr(obj, f.name)) for f in file_fields(type(obj))}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def file_fields(cls: type) -> list[dataclasses.Field]:
    """The fields an experiment file holds (not those marked `python_only`).

    Args:
        cls: a dataclass.
    """
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("python_only")]


def build(cls: type, values: Any, prefix: str = "", where: str = "") -> Any:
    """`cls` from plain values, every key known and every value of its field's type.

    Args:
        cls: the dataclass.
        values: its fields' values (nested dataclasses as dicts); missing keys: defaults.
        prefix: the dotted key of `values`, for messages ("model.").
        where: where the values came from, for messages (" in run.toml").

    Example:
    >>> from tfinetune.training.recipe import Stage
    >>> build(Stage, {"epochs": 2}).epochs
    2
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'The file'} must be a table{where}.")
    hints = field_types(cls)
    names = list(hints)
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
            raise ConfigError(
                f"Unknown key {prefix + key!r}{where}.{hint} The keys here are: {', '.join(names)}."
            )
    kwargs = {k: _check(v, hints[k], f"{prefix}{k}", where) for k, v in values.items()}
    return cls(**kwargs)


def field_types(cls: type) -> dict[str, Any]:
    """Each file field's type: its `toml` type where given, else its annotation.

    `Stage.learning_rate` is a float in a file, a float or a Keras schedule in Python.

    Args:
        cls: the dataclass.

    Example:
    >>> from tfinetune.training.recipe import Stage
    >>> field_types(Stage)["learning_rate"], field_types(Stage)["lr_decay"]
    (<class 'float'>, float | None)
    """
    module = vars(sys.modules[cls.__module__])
    hints = {}
    for f in file_fields(cls):
        hint = f.metadata.get("toml", f.type)
        hints[f.name] = eval(hint, module) if isinstance(hint, str) else hint
    return hints


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(_type_name(a) for a in options)
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        plural = {str: "strings", int: "whole numbers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(item, 'tables')}"
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    return names.get(hint, f"a table ({getattr(hint, '__name__', hint)})")


def _check(value: Any, hint: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(hint):
            try:
                return _check(value, option, key, where)
            except ConfigError:
                continue
    elif origin is list:
        if isinstance(value, list):
            item = typing.get_args(hint)[0]
            return [_check(v, item, f"{key}.{i}", where) for i, v in enumerate(value, 1)]
    elif dataclasses.is_dataclass(hint):
        return build(hint, value, f"{key}.", where)
    elif hint is type(None) and value is None:  # an unset default, such as lr_decay
        return None
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif (hint is int and isinstance(value, int) and not isinstance(value, bool)) or (
        hint in (str, bool) and type(value) is hint
    ):
        return value
    raise ConfigError(
        f"{key} must be {_type_name(hint)}, not {value!r} ({type(value).__name__}){where}."
    )


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts and lists (list positions count from 1).

    Args:
        tree: nested dicts and lists, changed in place.
        dotted: the key, such as "stages.2.epochs".
        value: the value to set.

    Example:
    >>> tree = {"stages": [{"epochs": 1}, {"epochs": 2}]}
    >>> set_dotted(tree, "stages.2.epochs", 5); tree["stages"][1]
    {'epochs': 5}
    """
    parts = dotted.split(".")
    node: Any = tree
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or not 1 <= int(part) <= len(node):
                raise ConfigError(
                    f"{here}: {'.'.join(parts[:depth])} has {len(node)} entries, numbered from "
                    f"1; {part!r} is not one of them."
                )
            index = int(part) - 1
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if part not in node:
                close = difflib.get_close_matches(part, list(node), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"Unknown key {here!r}.{hint} Known: {', '.join(node)}.")
            if last:
                node[part] = value
            node = node[part]
        else:
            raise ConfigError(f"{here}: {'.'.join(parts[:depth])} holds a single value.")
