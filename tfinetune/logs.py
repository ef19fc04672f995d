"""TensorFlow's C++ start-up log, kept quiet unless asked for (`TFINETUNE_VERBOSE=1`).

TensorFlow's libraries log while they load (oneDNN, CUDA, CPU features), before absl's
logging is initialised, and such messages ignore every threshold (abseil-cpp#1718). So
while TensorFlow is imported the process's stderr (file descriptor 2) points at the null
device, and `TF_CPP_MIN_LOG_LEVEL=3` keeps later C++ messages (a failed `cuInit` on a
machine without a GPU) out too; a `TF_CPP_MIN_LOG_LEVEL` the user set is kept. An error
raised by the import still reaches the caller.

`import tfinetune` arranges this for the first import of TensorFlow that follows (its own
or the user's); the command line does it before any command that needs TensorFlow.
`TFINETUNE_VERBOSE=1` (or `tfinetune --verbose`) leaves the log as TensorFlow writes it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator

VERBOSE_ENV = "TFINETUNE_VERBOSE"


def wants_tensorflow_log() -> bool:
    """Whether `TFINETUNE_VERBOSE=1` asks for TensorFlow's own log messages.

    Example:
    >>> wants_tensorflow_log() in (True, False)
    True
    """
    return os.environ.get(VERBOSE_ENV) == "1"


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow(verbose: int = 0) -> None:
    """Import TensorFlow now, with its C++ start-up log kept quiet (see the module's note).

    Args:
        verbose: leave TensorFlow's logging alone (and import nothing).

    Example:
    >>> quiet_tensorflow(verbose=1)
    """
    if verbose:
        return
    if "tensorflow" in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        return
    with _quiet_loading():
        import tensorflow  # noqa: F401


class OnFirstImport(importlib.abc.MetaPathFinder):
    """Runs a module's first import through `around(exec_module, module)`, then leaves.

    Args:
        name: the module (a top-level package such as "keras").
        around: called with the loader's `exec_module` and the new module; it must call
            the former with the latter.
    """

    def __init__(self, name: str, around) -> None:
        self.name, self.around = name, around

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        spec.loader.exec_module = lambda module: self.around(exec_module, module)
        return spec


def _exec_quietly(exec_module, module) -> None:
    with _quiet_loading():
        exec_module(module)


def _is_quiet_hook(finder) -> bool:
    return isinstance(finder, OnFirstImport) and finder.around is _exec_quietly


def quiet_next_tensorflow_import() -> None:
    """Keep TensorFlow's start-up log quiet when it is first imported (unless asked for).

    Example:
    >>> quiet_next_tensorflow_import()
    """
    if wants_tensorflow_log() or "tensorflow" in sys.modules:
        return
    if not any(_is_quiet_hook(f) for f in sys.meta_path):
        sys.meta_path.insert(0, OnFirstImport("tensorflow", _exec_quietly))


def show_tensorflow_log() -> None:
    """Undo `quiet_next_tensorflow_import` (for `tfinetune --verbose`, decided after import).

    Example:
    >>> show_tensorflow_log()
    """
    sys.meta_path[:] = [f for f in sys.meta_path if not _is_quiet_hook(f)]
