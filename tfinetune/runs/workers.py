"""More than one worker process: the chief writes the run folder, the others a scratch copy.

Under `MultiWorkerMirroredStrategy` (`--strategy multi_worker`) every worker runs the same
`tfinetune train` command with its own `TF_CONFIG`; on the JAX backend, with its own
`KERAS_DISTRIBUTION_*` variables (a `ProcessGroup`, see `tfinetune.training.processes`). The
chief (the `chief` task, else worker 0; on JAX process 0) writes the run folder as a single
process would. Every other worker trains in step with it in a scratch folder of its own,
removed when it ends, and writes nothing in the run folder; on `--resume` it starts from a
copy of the chief's checkpoints (in `NAME.partial`), so the run folder must sit where every
worker can read it (a cluster's shared file system); the chief alone checks that the
experiment and the data did not change. After training the weights are the same on every
worker: the chief evaluates and exports a copy of the model taken outside the strategy (one
process, no collective ops), the others stop (on JAX every process first leaves the group,
together: `trained_alone`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import keras
import tensorflow as tf

from tfinetune.atomic import MARKER, partial_folder
from tfinetune.runs.folder import CHECKPOINTS
from tfinetune.training.processes import ProcessGroup, leave_process_group

# A run's strategy: TensorFlow's, or a group of processes on the JAX backend.
Strategy = tf.distribute.Strategy | ProcessGroup


def is_chief(strategy: Strategy) -> bool:
    """Whether this process writes the run folder: always, except a non-chief worker.

    Args:
        strategy: the run's strategy.

    Example:
    >>> is_chief(tf.distribute.get_strategy())
    True
    """
    if isinstance(strategy, ProcessGroup):
        return strategy.chief
    return bool(strategy.extended.should_checkpoint)


def is_multi_worker(strategy: Strategy) -> bool:
    """Whether the strategy spans processes: `MultiWorkerMirroredStrategy` (one worker or
    several) or a JAX process group."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy | ProcessGroup)


def trained_alone(model: keras.Model, strategy: Strategy) -> keras.Model:
    """After training, on every process: the model the chief evaluates and exports alone.

    A JAX group is left by all its processes together first; on the chief the model is then
    copied outside the strategy (`outside_strategy`); other processes and single-process runs
    get the model back as it is.

    Args:
        model: the trained model.
        strategy: the run's strategy.
    """
    if isinstance(strategy, ProcessGroup):
        leave_process_group()
    if is_multi_worker(strategy) and is_chief(strategy):
        return outside_strategy(model)
    return model


@contextlib.contextmanager
def worker_folder(
    out_dir: str | os.PathLike, strategy: Strategy, resume: bool
) -> Iterator[tuple[Path, bool]]:
    """The folder this process writes, and whether it is the chief's run folder.

    Args:
        out_dir: the run folder.
        strategy: the run's strategy.
        resume: a resumed run: a worker copies the chief's unfinished run first.

    Example:
    >>> with worker_folder("runs/a", tf.distribute.get_strategy(), False) as (out, chief):
    ...     print(out, chief)
    runs/a True
    """
    if is_chief(strategy):
        yield Path(out_dir), True
        return
    with tempfile.TemporaryDirectory(prefix="tfinetune-worker-") as scratch:
        mine = Path(scratch) / Path(out_dir).name
        if resume:
            chiefs = partial_folder(out_dir)
            if not chiefs.is_dir():
                raise FileNotFoundError(
                    f"This worker cannot see the chief's unfinished run {str(chiefs)!r}: put "
                    "the run folder on storage every worker reads (the same path on each)."
                )
            _copy_for_resume(chiefs, partial_folder(mine))
        yield mine, False


def _copy_for_resume(chiefs: Path, mine: Path) -> None:
    """What a worker resumes from: the unfinished run's marker and its checkpoints (the chief
    checks the experiment and the files; a file it replaces meanwhile is passed over)."""

    def copy(source, target):
        with contextlib.suppress(FileNotFoundError):
            shutil.copy2(source, target)

    mine.mkdir(parents=True)
    shutil.copy2(chiefs / MARKER, mine / MARKER)
    if (chiefs / CHECKPOINTS).is_dir():
        shutil.copytree(chiefs / CHECKPOINTS, mine / CHECKPOINTS, copy_function=copy)


def outside_strategy(model: keras.Model) -> keras.Model:
    """A copy of a model trained under a multi-worker strategy, made outside it, so that one
    process can evaluate and export it (the original's predictions gather every worker's).

    Args:
        model: the trained model.
    """
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.keras"
        model.save(path)
        return keras.models.load_model(path)  # made under the default strategy
