"""Resuming a run after an interruption or a kill, from atomic per-epoch checkpoints."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfinetune import build_classifier, fine_tune
from tfinetune.cli import main
from tfinetune.data import scan_record
from tfinetune.training import checkpoints
from tfinetune.training.checkpoints import Progress, load_checkpoint, save_checkpoint
from tfinetune.training.stages import Stage

# From scratch (BatchNorm trained, one rate for all groups), small batches: a model that
# learns the colours below in a few seconds, so the resumed run's accuracy means something.
TINY = ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "16", "--train-bn"]
TINY += ["--batch-size", "4", "--val-split", "0.5", "--lr-mult", "1", "--train-groups", "99"]
TINY += ["--learning-rate", "0.01", "--freeze-epochs", "1", "--epochs", "8"]
TINY += ["--schedule", "warmup_cosine"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 noisy images per colour class (60 validation images: one is 1.7 points)."""
    root = tmp_path_factory.mktemp("r") / "data"
    rng = np.random.default_rng(3)
    for name, colour in {
        "red": (170, 90, 90),
        "green": (90, 170, 90),
        "blue": (90, 90, 170),
    }.items():
        (root / name).mkdir(parents=True)
        for i in range(40):
            pixels = rng.normal(colour, 60.0, (16, 16, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *TINY, "--quiet"]) == 0
    return run


def _arrays(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(16, 16, 16, 3)).astype("float32") * 50 + 128, np.arange(16) % 2


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    save_checkpoint(tmp_path, model, None, Progress(1, 0))
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def refused(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "replace", refused)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, model, None, Progress(1, 3))
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left
    assert load_checkpoint(tmp_path)[0].epochs_done == 0


class _Interrupt(keras.callbacks.Callback):
    """Ctrl-C after the second epoch of the second stage (global epoch 3)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


def test_fine_tune_resumes_mid_stage_with_the_optimizer_where_it_was(tmp_path):
    x, y = _arrays()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    stages = [Stage(1, 1, 1e-2, "head"), Stage(3, 3, 1e-3, "all", lr_mult=3, schedule="one_cycle")]

    def train(folder, resume=False, callbacks=()):
        keras.utils.set_random_seed(1)
        model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
        history = fine_tune(model, ds, stages=stages, checkpoint_dir=folder, resume=resume,
                            callbacks=callbacks, verbose=0)  # fmt: skip
        return model, history

    _, whole = train(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", callbacks=[_Interrupt()])
    progress, _ = load_checkpoint(tmp_path / "cut")
    assert (progress.stage, progress.epochs_done) == (1, 2)
    _, resumed = train(tmp_path / "cut", resume=True)
    assert resumed.stages == whole.stages == [("head", 0, 1), ("all", 1, 4)]
    assert resumed.optimizer == whole.optimizer  # iterations and each group's final rate
    assert resumed.optimizer[1]["iterations"] == 12
    assert len(resumed.history["loss"]) == 4 and np.isfinite(resumed.history["loss"]).all()


KILL_IN_STAGE_2 = """
import os, signal
from tfinetune.training import checkpoints
saving = checkpoints.EpochCheckpoint.on_epoch_end
def on_epoch_end(self, epoch, logs=None):
    saving(self, epoch, logs)
    if self.stage == 1 and epoch - self.epoch_offset + 1 == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # mid stage 2, its epoch 3 saved
checkpoints.EpochCheckpoint.on_epoch_end = on_epoch_end
"""


def _cli(*args, prelude=""):
    code = textwrap.dedent(prelude) + "\nimport sys\nfrom tfinetune.cli import main\n"
    code += "sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )


def _history(run):
    return json.loads((Path(run) / "history.json").read_text())


@pytest.mark.processes
def test_a_run_killed_in_stage_2_resumes_to_the_uninterrupted_result(
    data, uninterrupted, tmp_path, capsys
):
    run = tmp_path / "run"
    killed = _cli("train", "--data", data, "--out", run, *TINY, prelude=KILL_IN_STAGE_2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    partial = tmp_path / "run.partial"
    assert not run.exists() and (partial / "checkpoints" / "checkpoint.npz").is_file()
    assert load_checkpoint(partial / "checkpoints")[0].epochs_done == 3

    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "stage 2/2 fine-tune, epoch 4/8" in out and "stage 2/2 fine-tune, epoch 3/8" not in out
    assert not partial.exists() and (run / "saved_model" / "1" / "saved_model.pb").is_file()
    whole, resumed = _history(uninterrupted), _history(run)
    assert [(s["name"], s["start"], s["end"]) for s in resumed["stages"]] == [
        ("head", 0, 1),
        ("fine-tune", 1, 9),
    ]
    for mine, theirs in zip(resumed["stages"], whole["stages"], strict=True):
        assert mine["optimizer"] == theirs["optimizer"]  # iterations and final rates
    accuracy = [
        json.loads((r / "metrics.json").read_text())["accuracy"] for r in (run, uninterrupted)
    ]
    # The remaining epochs see the data in another order: allow one of the 30 images.
    assert abs(accuracy[0] - accuracy[1]) <= 0.034 and min(accuracy) > 0.8, accuracy
    assert len(resumed["history"]["loss"]) == 9

    # A finished run is not retrained.
    assert main(["train", "--resume", str(run)]) == 0
    assert "finished run: nothing to resume" in capsys.readouterr().out


def test_resume_refuses_a_folder_that_is_no_run_and_a_changed_experiment(
    data, uninterrupted, tmp_path, capsys
):
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "is not a run to resume" in capsys.readouterr().err
    # An unfinished run: the finished one, as it was before its end.
    partial = tmp_path / "run.partial"
    shutil.copytree(uninterrupted, partial)
    before = {p.name: p.read_bytes() for p in partial.rglob("*") if p.is_file()}
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "stages.2.epochs=9"]) == 2
    err = capsys.readouterr().err
    assert "The experiment changed since the run started (stages.2.epochs: 8 -> 9)" in err
    assert {p.name: p.read_bytes() for p in partial.rglob("*") if p.is_file()} == before
    # Starting anew over an unfinished run needs --overwrite.
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 2
    assert "An unfinished run waits in" in capsys.readouterr().err


def _two_checkpoints(folder):
    """Checkpoints after epoch 1 (kept as the previous one) and epoch 2 (the latest)."""
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=16)
    save_checkpoint(folder, model, None, Progress(1, 1))
    save_checkpoint(folder, model, None, Progress(1, 2))
    return model


def _damage_an_array(path):
    """Rewrite a valid .npz with one weight changed and the old digest: zip checks pass."""
    with np.load(path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays["model/0"] = arrays["model/0"] + 1
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", ["truncated", "altered", "zero bytes"])
def test_a_damaged_checkpoint_falls_back_to_the_one_before_it(tmp_path, capsys, damage):
    _two_checkpoints(tmp_path)
    latest = tmp_path / "checkpoint.npz"
    if damage == "truncated":  # a kill mid-write where renames are not atomic
        latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    elif damage == "altered":
        _damage_an_array(latest)
    else:
        latest.write_bytes(b"")
    progress, arrays = load_checkpoint(tmp_path)
    assert progress.epochs_done == 1  # the previous epoch's, whole
    line = capsys.readouterr().err.strip()
    assert (
        "checkpoint.npz is not usable" in line and "resuming from the checkpoint before it" in line
    )
    expected = "does not match the digest" if damage == "altered" else "cannot be read"
    assert expected in line and "\n" not in line
    assert "model/0" in arrays and "digest" not in arrays


def test_no_good_checkpoint_left_is_one_clear_error(tmp_path):
    _two_checkpoints(tmp_path)
    _damage_an_array(tmp_path / "checkpoint.npz")
    (tmp_path / "checkpoint.previous.npz").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(ValueError, match=r"Cannot resume: .*checkpoint.npz is not usable: its "
                       r"content does not match .*checkpoint.previous.npz is not usable: it "
                       r"cannot be read .* Start the run again without --resume"):  # fmt: skip
        load_checkpoint(tmp_path)


def test_a_checkpoint_from_other_versions_resumes_and_says_so(tmp_path, capsys, monkeypatch):
    _two_checkpoints(tmp_path)
    written_by = keras.__version__
    monkeypatch.setattr(checkpoints.keras, "__version__", "3.99.0")
    assert load_checkpoint(tmp_path)[0].epochs_done == 2
    err = capsys.readouterr().err
    assert f"written by other versions (keras {written_by} -> 3.99.0)" in err


@pytest.mark.processes
def test_resume_with_a_damaged_checkpoint_finishes_from_the_one_before(
    data, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    killed = _cli("train", "--data", data, "--out", run, *TINY, prelude=KILL_IN_STAGE_2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = tmp_path / "run.partial" / "checkpoints"
    latest = folder / "checkpoint.npz"
    latest.write_bytes(latest.read_bytes()[:1000])  # damaged on disk
    # The data did not change: the resumed run reads what the first scan found.
    assert len(list((tmp_path / "run.partial" / "scan").glob("scan-*.npz"))) == 1

    def scanned_again(*args, **kwargs):
        raise AssertionError("the resumed run checked its unchanged files again")

    monkeypatch.setattr(scan_record, "check_files", scanned_again)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "resuming from the checkpoint before it" in capsys.readouterr().err
    assert len(_history(run)["history"]["loss"]) == 9  # epoch 3 of stage 2 trained again
    assert (run / "saved_model" / "1" / "saved_model.pb").is_file()


@pytest.mark.processes
def test_resume_while_the_run_trains_elsewhere_is_refused(data, tmp_path):
    run = tmp_path / "run"
    slow = [*TINY, "--epochs", "100000"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tfinetune.cli", "train", "--data", str(data), "--out", str(run),
         *map(str, slow)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        checkpoint = tmp_path / "run.partial" / "checkpoints" / "checkpoint.npz"
        for _ in range(600):
            if checkpoint.is_file() or process.poll() is not None:
                break
            time.sleep(0.2)
        assert checkpoint.is_file(), process.stderr.read() if process.poll() is not None else ""
        second = _cli("train", "--resume", run)
        assert second.returncode == 2
        assert f"Another tfinetune command (process {process.pid})" in second.stderr
    finally:
        process.kill()
        process.communicate()
