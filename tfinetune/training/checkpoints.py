"""Checkpoints of a staged fine-tuning, written atomically after every epoch, to resume from.

One file, `checkpoint.npz`, holds the model's weights, the optimizer's variables (moments,
the iteration count that drives the schedules, the weight averages) and where training
stands: the stage, the epochs done in it, and the history so far, with a SHA-256 digest of
all of it and the versions that wrote it. It is written under a temporary name and renamed
into place, and the one before it is kept as `checkpoint.previous.npz`: a file damaged on
disk, or cut short by a kill on a filesystem whose rename is not atomic, fails its digest,
and the run resumes from the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import keras
import numpy as np

CHECKPOINT_FILE = "checkpoint.npz"
PREVIOUS_FILE = "checkpoint.previous.npz"
_DIGEST, _VERSIONS = "digest", "versions"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of every array's name, dtype, shape and bytes, in name order."""
    sha = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        sha.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


def versions() -> dict[str, str]:
    """The versions a checkpoint records: Keras, its backend, and the backend's package.

    Example:
    >>> sorted(versions())
    ['backend', 'framework', 'keras']
    """
    backend = keras.config.backend()
    package = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend, backend)
    try:
        framework = f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        framework = package
    return {"keras": keras.__version__, "backend": backend, "framework": framework}


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
    arrays[_VERSIONS] = np.array(json.dumps(versions()))
    arrays[_DIGEST] = np.array(_digest(arrays))
    final = folder / CHECKPOINT_FILE
    temporary = folder / f".{CHECKPOINT_FILE}.tmp-{uuid.uuid4().hex[:8]}.npz"
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if final.is_file():
            os.replace(final, folder / PREVIOUS_FILE)  # the last good one, kept
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return final


def _read_verified(path: Path) -> dict[str, np.ndarray]:
    """A checkpoint's arrays, after checking them against the digest written with them."""
    try:
        with np.load(path) as saved:
            arrays = {key: saved[key] for key in saved.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"it cannot be read ({type(err).__name__}: {err})") from err
    if "progress" not in arrays:
        raise ValueError("it holds no training progress")
    digest = arrays.pop(_DIGEST, None)
    if digest is not None and str(digest) != _digest(arrays):
        raise ValueError("its content does not match the digest written with it (damaged)")
    return arrays


def load_checkpoint(folder: str | os.PathLike) -> tuple[Progress, dict] | None:
    """The progress and arrays of `folder/checkpoint.npz`, or None when there is none.

    A checkpoint that cannot be read or fails its digest is passed over, with a line on
    stderr, for the one before it (one epoch earlier); when no good one is left, a
    `ValueError` says so. A checkpoint written by other versions of Keras or its backend
    is read, with a line saying which.

    Args:
        folder: the checkpoint folder.
    """
    problems = []
    for path in (Path(folder) / CHECKPOINT_FILE, Path(folder) / PREVIOUS_FILE):
        if not path.is_file():
            continue
        try:
            arrays = _read_verified(path)
        except ValueError as err:
            problems.append(f"{path} is not usable: {err}")
            continue
        if problems:
            print(f"{problems[0]}; resuming from the checkpoint before it ({path.name}).",
                  file=sys.stderr)  # fmt: skip
        _say_other_versions(json.loads(str(arrays.pop(_VERSIONS, "{}"))), path)
        progress = Progress(**json.loads(str(arrays.pop("progress"))))
        return progress, arrays
    if problems:
        raise ValueError(
            f"Cannot resume: {'; '.join(problems)}. Start the run again without --resume "
            "(with --overwrite), or restore the checkpoint folder from a backup."
        )
    return None


def _say_other_versions(recorded: dict, path: Path) -> None:
    now = versions()
    changed = [
        f"{k} {recorded[k]} -> {now[k]}" for k in now if k in recorded and recorded[k] != now[k]
    ]
    if changed:
        print(f"The checkpoint {path.name} was written by other versions ({', '.join(changed)}); "
              "resuming with these ones, so the rest of the run may differ slightly from an "
              "uninterrupted one.", file=sys.stderr)  # fmt: skip


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
