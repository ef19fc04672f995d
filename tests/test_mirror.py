"""Mirror averaging inside the model (`build_classifier(mirror=True)`, `evaluation.tta`)."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import build_classifier
from tfinetune.models.mirror import mirrors
from tfinetune.models.saving import load_keras_model
from tfinetune.serving.export import export_saved_model
from tfinetune.serving.inference import ExportedClassifier
from tfinetune.serving.tflite import convert_to_tflite


def _pair(seed: int = 0):
    """A plain and a mirrored classifier with the same (random) weights."""
    keras.utils.set_random_seed(seed)
    plain = build_classifier("convnet_tiny", 3, weights=None, image_size=24, dropout=0.0)
    mirrored = build_classifier(
        "convnet_tiny", 3, weights=None, image_size=24, dropout=0.0, mirror=True
    )
    mirrored.set_weights(plain.get_weights())
    x = np.random.default_rng(seed).uniform(0, 255, (5, 24, 24, 3)).astype("float32")
    return plain, mirrored, x


def _softmax_of_mean_logits(plain, x):
    """softmax of the mean of the two views' logits, from the plain model's probabilities."""
    logits = np.log(plain.predict(x, verbose=0)) + np.log(plain.predict(x[:, :, ::-1], verbose=0))
    e = np.exp(logits / 2 - (logits / 2).max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_a_mirrored_model_averages_the_logits_of_both_views():
    plain, mirrored, x = _pair()
    expected = _softmax_of_mean_logits(plain, x)
    got = mirrored.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, plain.predict(x, verbose=0), atol=1e-4)
    # The same image or its mirror: the same prediction.
    np.testing.assert_allclose(mirrored.predict(x[:, :, ::-1], verbose=0), got, atol=1e-5)
    assert mirrors(mirrored) and not mirrors(plain)


def test_training_sees_each_image_once_as_it_is():
    plain, mirrored, x = _pair(1)
    plain_out = keras.ops.convert_to_numpy(plain(x, training=True))
    mirrored_out = keras.ops.convert_to_numpy(mirrored(x, training=True))
    assert mirrored_out.shape == (5, 3)
    np.testing.assert_allclose(mirrored_out, plain_out, atol=1e-5)  # no dropout in either


def test_saved_model_tflite_and_keras_file_keep_the_mirror(tmp_path):
    _, mirrored, x = _pair(2)
    expected = mirrored.predict(x, verbose=0)
    mirrored.save(tmp_path / "m.keras")
    np.testing.assert_allclose(
        load_keras_model(tmp_path / "m.keras").predict(x, verbose=0), expected, atol=1e-6
    )
    # A fresh process that imports only the loader reads the mirror layers too.
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np; from tfinetune.models.saving import load_keras_model; "
        "m = load_keras_model(sys.argv[1]); np.save(sys.argv[3], m.predict(np.load(sys.argv[2])))"
    )
    files = [str(tmp_path / name) for name in ("m.keras", "x.npy", "fresh.npy")]
    done = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "fresh.npy"), expected, atol=1e-6)
    served = ExportedClassifier(export_saved_model(mirrored, tmp_path / "e", ["a", "b", "c"]))
    pixels = x.astype("uint8")
    expected_pixels = mirrored.predict(pixels.astype("float32"), verbose=0)
    np.testing.assert_allclose(served.predict_pixels(pixels), expected_pixels, atol=1e-5)
    interpreter = tf.lite.Interpreter(model_content=convert_to_tflite(mirrored, "float32"))
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    lite = next(iter(runner(**{name: x}).values()))
    np.testing.assert_allclose(lite, expected, atol=1e-5)


def test_text_and_sound_models_refuse_a_mirror(tmp_path):
    from tiny_hub import save_tiny_text

    with pytest.raises(ValueError, match=r"mirror=True averages mirrored images.*text"):
        build_classifier(f"hub:{save_tiny_text(tmp_path / 'hub')}", 2, mirror=True)


def test_tta_asked_of_a_model_that_mirrors_adds_no_second_pass(tmp_path):
    from tfinetune.serving.export import read_contract
    from tfinetune.serving.inference import KerasClassifier

    plain, mirrored, x = _pair(3)
    pixels = x.astype("uint8")
    for name, model, passes in (("m", mirrored, 1), ("p", plain, 2)):
        # Exports say whether the model mirrors, so their loaders know.
        exported = export_saved_model(model, tmp_path / name / "e", ["a", "b", "c"])
        assert read_contract(exported)[1]["mirror"] is (passes == 1)
        model.save(tmp_path / name / "m.keras")
        (tmp_path / name / "labels.txt").write_text("a\nb\nc\n")
        for loaded in (ExportedClassifier(exported), KerasClassifier(tmp_path / name / "m.keras")):
            assert loaded.mirror is (passes == 1)
            calls = []
            original = loaded._predict_pixels
            loaded._predict_pixels = lambda p, f=original, c=calls: c.append(1) or f(p)
            probs = loaded.predict_pixels(pixels, tta=True)
            assert len(calls) == passes, (name, type(loaded).__name__)
            if passes == 1:  # the model's own answer, already both views
                expected = model.predict(pixels.astype("float32"), verbose=0)
                np.testing.assert_allclose(probs, expected, atol=1e-5)
