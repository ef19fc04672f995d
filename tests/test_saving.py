"""Plain Keras loads what tfinetune saves: `import keras, tfinetune` and nothing else.

Each model is fine-tuned for a step (so it is compiled with tfinetune's schedules, loss and
`MultiOptimizer`), saved, and loaded in a fresh process by `keras.saving.load_model`, compiled
and not; the loaded model must predict what the saved one did. Hub models are saved after
their SavedModel folder's copy is made, and loaded after that folder is deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tiny_hub import save_tiny_audio, save_tiny_text

import tfinetune
from tfinetune import Stage, build_classifier, fine_tune

pytestmark = pytest.mark.processes

LOAD = """
import sys
import numpy as np
import keras, tfinetune
inputs = np.load(sys.argv[2], allow_pickle=True)
if inputs.dtype.kind in "OU":  # sentences
    import tensorflow as tf
    inputs = tf.constant(inputs.astype(str))
for compile in (True, False):
    model = keras.saving.load_model(sys.argv[1], compile=compile)
    assert (getattr(model, "optimizer", None) is not None) == compile, compile
    np.save(sys.argv[3 + compile], model.predict(inputs, verbose=0))
"""


def _train_briefly(model, inputs, targets) -> None:
    data = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(4)
    stages = [Stage(1, 1, 1e-3, "head"), Stage(1, "all", 1e-4, lr_mult=2, schedule="one_cycle")]
    fine_tune(model, data, stages=stages, label_smoothing=0.0, verbose=0)


def _models(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    image = {"backbone": "convnet_tiny", "weights": None, "image_size": 32}
    labels = rng.integers(0, 3, 8)
    multi_hot = rng.integers(0, 2, (8, 3)).astype("float32")
    text_folder = save_tiny_text(tmp_path / "tiny_text")
    audio_folder = save_tiny_audio(tmp_path / "tiny_audio")
    sentences = np.array(["a fine day", "the worst film", "stocks fell", "rain"] * 2)
    waves = rng.uniform(-0.5, 0.5, (8, 16000)).astype("float32")
    multi = build_classifier(num_classes=3, task="multi_label", **image)
    reg = build_classifier(num_classes=1, task="regression", target_mean=5, target_std=2, **image)
    audio = build_classifier("hub:" + audio_folder, 3, pooling="attention", clip_seconds=1.0)
    return [
        ("mirrored", build_classifier(num_classes=3, mirror=True, **image), pixels, labels),
        ("multi_label", multi, pixels, multi_hot),
        ("regression", reg, pixels, rng.normal(5, 2, (8, 1)).astype("float32")),
        ("text", build_classifier("hub:" + text_folder, 3), sentences, labels),
        ("audio", audio, waves, labels),
    ]


def test_keras_load_model_reads_every_kind_of_model_in_a_fresh_process(tmp_path):
    saved = []
    for name, model, inputs, targets in _models(tmp_path):
        _train_briefly(model, inputs, targets)
        saved.append((name, inputs, model.predict(tf.constant(inputs), verbose=0)))
        model.save(tmp_path / f"{name}.keras")
    for folder in ("tiny_text", "tiny_audio"):  # the hub SavedModels are gone
        shutil.rmtree(tmp_path / folder)
    for name, inputs, expected in saved:
        path = tmp_path / f"{name}.keras"
        np.save(tmp_path / "inputs.npy", inputs)
        outs = [tmp_path / f"{name}_{c}.npy" for c in ("raw", "compiled")]
        command = [sys.executable, "-c", LOAD, str(path), str(tmp_path / "inputs.npy"), *outs]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, (name, done.stderr[-3000:])
        for out in outs:
            np.testing.assert_allclose(np.load(out), expected, atol=1e-5, err_msg=name)
        assert np.std(expected) > 0, name  # a model whose outputs depend on its inputs


def test_load_model_is_public_and_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tfinetune.load_model(tmp_path / "missing.keras")


def test_a_bare_keras_file_is_evaluated_predicted_and_exported_with_what_it_carries(
    trained_run, tmp_path, capsys
):
    from tfinetune.cli import main
    from tfinetune.models.heads import model_info

    data, run = trained_run
    bare = tmp_path / "alone" / "model.keras"  # no labels.txt, no export beside it
    bare.parent.mkdir()
    shutil.copy(run / "model.keras", bare)
    info = model_info(tfinetune.load_model(bare))
    assert info["class_names"] == ["cross", "ring"] and info["resize"] == "stretch"
    assert main(["evaluate", str(bare), "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    kept = json.loads((tmp_path / "e" / "metrics.json").read_text())
    expected = json.loads((run / "metrics.json").read_text())
    assert kept["accuracy"] == pytest.approx(expected["accuracy"], abs=0.2)
    image = next((data / "ring").glob("*.jpg"))
    capsys.readouterr()
    assert main(["predict", str(bare), str(image)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in ("cross", "ring")
    out = tmp_path / "served"
    assert main(["export", str(bare), "--out", str(out), "--data", str(data)]) == 0
    labels = (out / "1" / "assets.extra" / "labels.txt").read_text()
    assert labels == "cross\nring\n"


def test_the_model_records_the_temperature_folded_into_its_weights():
    from tfinetune.models.heads import apply_temperature, model_info

    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    for temperature in (2.0, 1.5):
        apply_temperature(model, temperature)
    assert model_info(model)["temperature"] == pytest.approx(3.0)
