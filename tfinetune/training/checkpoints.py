"""Checkpoints of a staged fine-tuning, written atomically after every epoch, to resume from.

One file, `checkpoint.npz`, holds the model's weights, the optimizer's variables (moments,
the iteration count that drives the schedules, the weight averages) and where training
stands: the stage, the epochs done in it, and the history so far. It is written under a
temporary name and renamed into place, so a kill during a save leaves the previous one.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

CHECKPOINT_FILE = "checkpoint.npz"


@dataclass
class Progress:
    """Where a staged fine-tuning stands.

    Args:
        stage: the index of the stage in progress (or about to start).
        epochs_done: epochs completed in that stage.
        history: `FineTuneHistory.to_dict()` of the stages completed before it.
        stage_logs: that stage's per-epoch logs so far.
    """

    stage: int = 0
    epochs_done: int = 0
    history: dict = field(default_factory=dict)
    stage_logs: dict[str, list[float]] = field(default_factory=dict)


def save_checkpoint(
    folder: str | os.PathLike,
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer | None,
    progress: Progress,
) -> Path:
    """Write `folder/checkpoint.npz` atomically.

    Args:
        folder: the checkpoint folder (made if missing).
        model: the model being trained (its `weights`, in order).
        optimizer: the stage's optimizer, or None at a stage boundary.
        progress: where training stands.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    if optimizer is not None:
        for i, v in enumerate(optimizer.variables):
            arrays[f"optimizer/{i}"] = keras.ops.convert_to_numpy(v)
    arrays["progress"] = np.array(json.dumps(progress.__dict__))
    final = folder / CHECKPOINT_FILE
    temporary = folder / f".{CHECKPOINT_FILE}.tmp-{uuid.uuid4().hex[:8]}.npz"
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final


def load_checkpoint(folder: str | os.PathLike) -> tuple[Progress, dict] | None:
    """The progress and arrays of `folder/checkpoint.npz`, or None when there is none.

    Args:
        folder: the checkpoint folder.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    with np.load(path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    progress = Progress(**json.loads(str(arrays.pop("progress"))))
    return progress, arrays


def restore(model: keras.Model, optimizer: keras.optimizers.Optimizer | None, arrays: dict):
    """Put a checkpoint's weights (and optimizer variables) back into a rebuilt model.

    Args:
        model: the model, built as when the checkpoint was written.
        optimizer: the compiled stage optimizer, or None for weights only.
        arrays: the arrays `load_checkpoint` returned.
    """
    weights = [arrays[f"model/{i}"] for i in range(len(model.weights))]
    model.set_weights(weights)
    if optimizer is None:
        return
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    saved = sorted((k for k in arrays if k.startswith("optimizer/")), key=_index)
    if len(saved) != len(optimizer.variables):
        raise ValueError(
            f"The checkpoint holds {len(saved)} optimizer variables but this stage's optimizer "
            f"has {len(optimizer.variables)}: the experiment changed since it was written."
        )
    for variable, key in zip(optimizer.variables, saved, strict=True):
        variable.assign(arrays[key])


def _index(key: str) -> int:
    return int(key.split("/")[1])


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a checkpoint after every epoch of one stage.

    Args:
        folder: the checkpoint folder.
        stage: the stage's index.
        history: the history of the stages before it (`FineTuneHistory.to_dict()`).
        earlier: the stage's logs from before a resume.
        epoch_offset: the global epoch number of the stage's first epoch.
    """

    def __init__(self, folder, stage: int, history: dict, earlier: dict, epoch_offset: int) -> None:
        super().__init__()
        self.folder, self.stage, self.history = Path(folder), stage, history
        self.logs = {k: list(v) for k, v in earlier.items()}
        self.epoch_offset = epoch_offset

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            self.logs.setdefault(key, []).append(float(value))
        progress = Progress(self.stage, epoch + 1 - self.epoch_offset, self.history, self.logs)
        save_checkpoint(self.folder, self.model, self.model.optimizer, progress)
