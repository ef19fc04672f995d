"""The command line's value types: what argparse turns a flag's text into, or refuses."""

from __future__ import annotations

import argparse


def at_least(lowest: int):
    """An argparse type: a whole number of at least `lowest`.

    Args:
        lowest: the smallest number accepted.

    Example:
    >>> at_least(1)("3")
    3
    """

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid whole number: {value!r}") from None
        if number < lowest:
            raise argparse.ArgumentTypeError(f"must be {lowest} or more, not {value}")
        return number

    return parse


positive_int, whole_number = at_least(1), at_least(0)


def groups(value: str) -> int | str:
    """An argparse type: a number of layer groups (1 or more), or "all".

    Args:
        value: the flag's text.

    Example:
    >>> groups("ALL"), groups("2")
    ('all', 2)
    """
    return "all" if value.strip().lower() == "all" else positive_int(value)


def weights(value: str) -> str:
    """An argparse type: "imagenet", a weights file, or "none" (in any case).

    Args:
        value: the flag's text.

    Example:
    >>> weights("None")
    'none'
    """
    return "none" if value.lower() == "none" else value


def parse_augment(value: str) -> str | list[str] | None:
    """`--augment`'s text as the experiment takes it: None, a policy, or layer names.

    Args:
        value: the flag's text.

    Example:
    >>> parse_augment("flip,rotation")
    ['flip', 'rotation']
    """
    if value == "none":
        return None
    return value.split(",") if "," in value else value


def hidden_units(value: str) -> list[int]:
    """An argparse type: layer sizes separated by commas ("" or "none" for none).

    Args:
        value: the flag's text.

    Example:
    >>> hidden_units("256,128")
    [256, 128]
    """
    if value.strip().lower() in ("", "none"):
        return []
    try:
        units = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes separated by commas such as 256,128, not {value!r}"
        ) from None
    if any(u < 1 for u in units):
        raise argparse.ArgumentTypeError(f"layer sizes must be 1 or more, not {value!r}")
    return units
