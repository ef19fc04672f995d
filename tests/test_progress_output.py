"""What a user reads while a run works: labelled, one bar per epoch, no terminal codes in a
pipe, and no TensorFlow C++ lines unless asked for."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tfinetune import Stage, build_classifier, fine_tune
from tfinetune.data.synthetic import write_shapes_folder

ANSI = re.compile(r"\x1b\[")
TF_CPP = re.compile(r"^[IWEF]\d{4} |oneDNN|cuInit|cuda drivers|absl::InitializeLog", re.M)


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFINETUNE_VERBOSE")}  # fmt: skip
    return {**env, **extra}


def test_a_training_read_through_a_pipe_is_labelled_and_plain(tmp_path):
    data = write_shapes_folder(tmp_path / "data", ["ring", "star"], 6, size=16)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--backbone",
            "convnet_tiny", "--weights", "none", "--image-size", "16", "--batch-size", "4",
            "--freeze-epochs", "1", "--epochs", "2"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "tfinetune.cli", *args], env=_clean_env(),
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert not ANSI.search(out), out[:2000]
    assert not TF_CPP.search(out), TF_CPP.search(out)
    assert "Unknown" not in out and "Epoch " not in out
    assert "checking 12 files\n" in done.stdout
    labels = re.findall(r"^stage \d/\d [\w-]+, epoch \d/\d$", done.stdout, re.M)
    assert labels == ["stage 1/2 head, epoch 1/1", "stage 2/2 fine-tune, epoch 1/2",
                      "stage 2/2 fine-tune, epoch 2/2"]  # fmt: skip
    assert re.search(r"^Training on cpu: float32, XLA off \(why: tfinetune doctor\)\.$",
                     done.stdout, re.M)  # fmt: skip


def test_the_first_epoch_of_an_unknown_length_dataset_has_a_bar_with_its_length(capsys):
    # A filtered dataset's length is unknown to Keras until an epoch ends: fine_tune counts
    # its batches (for the schedule) and gives the bar that length from the first epoch.
    x = np.random.default_rng(0).uniform(0, 255, (24, 32, 32, 3)).astype("float32")
    y = np.arange(24) % 2
    ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(8)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    stages = [Stage(2, 1, 1e-3, "head", schedule="warmup_cosine")]
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fine_tune(model, ds, stages=stages, verbose=1)
    out = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())  # a terminal's bar, in colour
    assert "Unknown" not in out and "Epoch " not in out
    assert out.count("stage 1/1 head, epoch 1/2") == out.count("stage 1/1 head, epoch 2/2") == 1
    first_epoch = out.split("stage 1/1 head, epoch 2/2")[0]
    assert re.search(r"\b1/3\b", first_epoch) and re.search(r"\b3/3\b", first_epoch)


def test_the_python_api_keeps_tensorflows_start_up_log_quiet_unless_asked():
    code = ("import os, tfinetune\n"
            "tfinetune.build_classifier('convnet_tiny', 2, weights=None, image_size=32)\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")  # fmt: skip
    quiet = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True,
                           text=True, timeout=300, check=True)  # fmt: skip
    assert not TF_CPP.search(quiet.stderr), quiet.stderr[:2000]
    assert quiet.stdout.strip() == "3"
    asked = subprocess.run([sys.executable, "-c", code], env=_clean_env(TFINETUNE_VERBOSE="1"),
                           capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    assert asked.stdout.strip() != "3"  # TensorFlow's own threshold, untouched
