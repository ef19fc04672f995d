"""The bounds on what tfinetune decodes, each with an environment variable to raise it."""

from __future__ import annotations

import os


def env_limit(name: str, default: float, what: str, whole: bool = True) -> float:
    """A positive limit from `$name`, else `default`; a clear error for anything else.

    Args:
        name: the environment variable.
        default: the limit when it is unset or empty.
        what: what the limit counts, for the error ("a whole number of pixels").
        whole: the limit is a whole number.

    Example:
    >>> env_limit("TFINETUNE_NO_SUCH_LIMIT", 5, "a whole number")
    5
    """
    text = os.environ.get(name, "")
    try:
        value = (int(text) if whole else float(text)) if text else default
    except ValueError:
        value = 0
    if not value > 0:
        raise ValueError(f"${name} must be {what} above 0. Received: {text!r}")
    return value
