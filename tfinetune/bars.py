"""Progress bars for tfinetune's own loops (checking files, predicting, writing shards).

Each bar is introduced by a line that says what it counts ("checking 245 files"); on a
terminal it is Keras's moving bar, elsewhere (a pipe, a log file, CI) one plain line when
it ends, without the terminal's escape codes.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def on_terminal() -> bool:
    """Whether standard output is a terminal (and so can redraw a bar in place).

    Example:
    >>> on_terminal() in (True, False)
    True
    """
    return bool(getattr(sys.stdout, "isatty", None) and sys.stdout.isatty())


def progress_bar(total: int, unit: str, doing: str, verbose: int = 1) -> keras.utils.Progbar | None:
    """A labelled progress bar, or None when `verbose` is off.

    Args:
        total: how many units the loop handles.
        unit: what one unit is ("file", "image"), for the bar's rate.
        doing: what the loop does with them ("checking"): the label reads "checking 245
            files".
        verbose: False: no label, no bar.

    Example:
    >>> bar = progress_bar(3, "file", "checking")
    checking 3 files
    >>> bar.add(3)  # doctest: +ELLIPSIS
    3/3 ...
    """
    if not verbose:
        return None
    import keras

    print(f"{doing} {total} {unit}{'' if total == 1 else 's'}", flush=True)
    return keras.utils.Progbar(total, unit_name=unit, verbose=1 if on_terminal() else 2)
