import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfinetune import ExportedClassifier, build_classifier, export_saved_model, scan_image_folder
from tfinetune.data.images import load_image
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.serving import export as export_module

# Runs in a fresh interpreter: loads the SavedModel with TensorFlow alone (no tfinetune).
SERVE_SCRIPT = """
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
paths = json.loads(sys.argv[2])
data = [tf.io.read_file(p) for p in paths]
out = loaded.signatures["serving_default"](image_bytes=tf.stack(data))
print(json.dumps({"probabilities": out["probabilities"].numpy().tolist(),
                  "label": [s.decode() for s in out["label"].numpy()]}))
"""


def serve_in_subprocess(export_dir: Path, paths: list[str]) -> dict:
    """Predict files with a SavedModel in a separate Python process."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(export_dir), json.dumps(paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_export_matches_model(model, export_dir, paths, class_names, image_size):
    """The SavedModel, in another process, agrees with the Keras model on the files as stored."""
    served = serve_in_subprocess(export_dir, paths)
    pixels = np.stack([load_image(p, image_size).numpy() for p in paths]).astype("float32")
    expected = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-4)
    assert served["label"] == [class_names[i] for i in expected.argmax(axis=1)]


def test_saved_model_serves_jpeg_bytes_like_the_keras_model(tmp_path):
    folder = write_shapes_folder(tmp_path / "d", ["star", "ring"], 3, size=48, image_format="jpeg")
    files = scan_image_folder(folder)
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    out = export_saved_model(model, tmp_path / "export", files.class_names)
    assert (out / "labels.txt").read_text().split() == ["ring", "star"]
    meta = json.loads((out / "tfinetune.json").read_text())
    assert meta["image_size"] == [32, 32] and meta["check_max_abs_diff"] <= 1e-4
    assert_export_matches_model(model, out, files.paths, files.class_names, 32)


def test_existing_export_is_not_replaced_without_overwrite(tmp_path):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, tmp_path / "export", ["a", "b"])
    assert (tmp_path / "export" / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_an_earlier_export_whole_but_never_a_users_folder(tmp_path):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="tfinetune did not write"):
        export_saved_model(model, tmp_path / "mine", ["a", "b"], overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "mine"
    first = export_saved_model(model, tmp_path / "export", ["a", "b"])
    (first / "variables" / "stale.txt").write_text("from the first export")
    second = export_saved_model(model, tmp_path / "export", ["x", "y"], overwrite=True)
    assert (second / "labels.txt").read_text() == "x\ny\n"
    assert not (second / "variables" / "stale.txt").exists()


def test_a_failed_check_leaves_nothing_behind(tmp_path, monkeypatch):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)

    def failing_check(*args, **kwargs):
        raise export_module.ExportCheckError("differs")

    monkeypatch.setattr(export_module, "_check_export", failing_check)
    with pytest.raises(export_module.ExportCheckError):
        export_saved_model(model, tmp_path / "export", ["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_class_names_must_match_outputs(tmp_path):
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    with pytest.raises(ValueError, match="predicts 2 classes but 3 class names"):
        export_saved_model(model, tmp_path / "export", ["a", "b", "c"])
    assert not (tmp_path / "export").exists()


def test_test_time_augmentation_through_the_saved_model(tmp_path):
    folder = write_shapes_folder(tmp_path / "d", ["star", "ring"], 2, size=40, image_format="jpeg")
    files = scan_image_folder(folder)
    model = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    classifier = ExportedClassifier(export_saved_model(model, tmp_path / "e", files.class_names))
    pixels = np.stack([load_image(p, 32).numpy() for p in files.paths]).astype("float32")
    mirrored = model.predict(pixels[:, :, ::-1], verbose=0)
    expected = (model.predict(pixels, verbose=0) + mirrored) / 2
    np.testing.assert_allclose(classifier.predict_files(files.paths, tta=True), expected, atol=1e-5)
    plain = classifier.predict_files(files.paths)
    np.testing.assert_allclose(plain, model.predict(pixels, verbose=0), atol=1e-5)
