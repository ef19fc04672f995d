import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfinetune import ExportedClassifier, build_classifier, export_saved_model, scan_image_folder
from tfinetune.atomic import folder_lock
from tfinetune.data.images import load_image
from tfinetune.data.records import _example
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.serving import export as export_module
from tfinetune.serving.export import export_version, versions_in

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
    assert (out / "assets.extra" / "labels.txt").read_text().split() == ["ring", "star"]
    meta = json.loads((out / "assets.extra" / "preprocessing.json").read_text())
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
    assert (second / "assets.extra" / "labels.txt").read_text() == "x\ny\n"
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


# === The three signatures, TF Serving's layout, and its clients ===


@pytest.fixture(scope="module")
def shapes_export(tmp_path_factory):
    """A tiny classifier exported as version 1 of a TF Serving base folder, and its images."""
    root = tmp_path_factory.mktemp("serving")
    names = ["cross", "ring", "star"]
    folder = write_shapes_folder(root / "d", names, 3, size=48, image_format="jpeg")
    files = scan_image_folder(folder)
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    version = export_version(model, root / "models" / "shapes", files.class_names, top_k=2)
    pixels = np.stack([load_image(p, 32).numpy() for p in files.paths]).astype("float32")
    return model, version, files, model.predict(pixels, verbose=0)


def test_three_signatures_agree_with_the_keras_model(shapes_export):
    model, version, files, expected = shapes_export
    loaded = tf.saved_model.load(str(version))
    encoded = [Path(p).read_bytes() for p in files.paths]
    # tf.Examples exactly as `tfinetune convert` writes them (with a label feature too).
    examples = [_example(e, [label]) for e, label in zip(encoded, files.labels, strict=True)]
    # Images of any size: the JPEGs decoded at their own 48x48, resized in the graph.
    full = [tf.io.decode_jpeg(e, channels=3) for e in encoded]
    outputs = [
        loaded.signatures["serving_default"](image_bytes=tf.constant(encoded)),
        loaded.signatures["serve_images"](images=tf.stack(full)),
        loaded.signatures["serve_examples"](example_bytes=tf.constant(examples)),
    ]
    for out in outputs:
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-4)
        top2 = np.argsort(-expected, axis=1)[:, :2]
        np.testing.assert_array_equal(out["top_k_class_ids"].numpy(), top2)
        labels = [[s.decode() for s in row] for row in out["top_k_labels"].numpy()]
        assert labels == [[files.class_names[i] for i in row] for row in top2]
        np.testing.assert_allclose(out["score"].numpy(), expected.max(axis=1), atol=1e-4)
    # A different size of uint8 image goes through the same resizing as training.
    small = loaded.signatures["serve_images"](images=tf.zeros([2, 17, 90, 3], tf.uint8))
    zeros = model.predict(np.zeros([1, 32, 32, 3], "float32"), verbose=0)
    np.testing.assert_allclose(small["probabilities"].numpy()[0], zeros[0], atol=1e-4)


def test_versions_are_integers_taken_in_turn_and_never_replaced_unasked(shapes_export, tmp_path):
    model, _, files, _ = shapes_export
    base = tmp_path / "models" / "shapes"
    assert export_version(model, base, files.class_names).name == "1"
    assert export_version(model, base, files.class_names, version=7).name == "7"
    assert export_version(model, base, files.class_names).name == "8"
    assert versions_in(base) == [1, 7, 8]
    with pytest.raises(FileExistsError, match="Version 7 already exists"):
        export_version(model, base, files.class_names, version=7)
    assert export_version(model, base, files.class_names, version=7, overwrite=True).name == "7"
    with pytest.raises(ValueError, match="Version 0 is not a positive integer"):
        export_version(model, base, files.class_names, version=0)
    # ExportedClassifier and the command line take the base folder's highest version.
    assert ExportedClassifier(base).path == base / "8"


def test_an_error_while_writing_leaves_no_version_folder(shapes_export, tmp_path, monkeypatch):
    model, _, files, _ = shapes_export

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_contract", broken)
    with pytest.raises(OSError, match="No space left"):
        export_version(model, tmp_path / "shapes", files.class_names)
    assert list((tmp_path / "shapes").iterdir()) == []  # no version, no temporary folder


def test_a_predict_request_from_the_tf_serving_client_reaches_the_signature(shapes_export):
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    _, version, files, expected = shapes_export
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.model_spec.signature_name = "serving_default"
    encoded = [Path(p).read_bytes() for p in files.paths]
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(encoded, dtype=tf.string))
    # What TF Serving does with it: look the signature up, feed each input by its name.
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    signature = tf.saved_model.load(str(version)).signatures[request.model_spec.signature_name]
    feeds = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    out = signature(**{name: tf.constant(value) for name, value in feeds.items()})
    labels = [s.decode() for s in out["label"].numpy()]
    assert labels == [files.class_names[i] for i in expected.argmax(axis=1)]


def _decode_rest_body(body: str) -> dict[str, list]:
    """TF Serving's REST decoding of a `predict` body in the row format: `{"b64": ...}`
    objects become bytes, and rows are either bare values (one input) or {name: value}."""

    def value(v):
        return base64.b64decode(v["b64"]) if isinstance(v, dict) and "b64" in v else v

    instances = json.loads(body)["instances"]
    if all(isinstance(row, dict) and "b64" not in row for row in instances):
        return {name: [value(row[name]) for row in instances] for name in instances[0]}
    return {"image_bytes": [value(row) for row in instances]}


def test_a_rest_body_with_base64_images_gives_the_right_classes(shapes_export):
    _, version, files, expected = shapes_export
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    b64 = [base64.b64encode(Path(p).read_bytes()).decode() for p in files.paths]
    bodies = [
        json.dumps({"instances": [{"b64": s} for s in b64]}),
        json.dumps({"instances": [{"image_bytes": {"b64": s}} for s in b64]}),
    ]
    for body in bodies:
        feeds = _decode_rest_body(body)
        out = signature(**{name: tf.constant(v) for name, v in feeds.items()})
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-4)
        labels = [s.decode() for s in out["label"].numpy()]
        assert labels == [files.class_names[i] for i in expected.argmax(axis=1)]


@pytest.mark.processes
def test_saved_model_cli_shows_the_signatures_and_runs_a_jpeg(shapes_export, tmp_path):
    _, version, files, expected = shapes_export
    cli = Path(sys.executable).parent / "saved_model_cli"
    if not cli.is_file():
        pytest.skip("saved_model_cli is not installed beside this Python")
    shown = subprocess.run(
        [cli, "show", "--dir", version, "--all"], capture_output=True, text=True, check=True
    ).stdout
    for signature, name, shape in [
        ("serving_default", "image_bytes", "(-1)"),
        ("serve_images", "images", "(-1, -1, -1, 3)"),
        ("serve_examples", "example_bytes", "(-1)"),
    ]:
        block = shown.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
        assert f"inputs['{name}']" in block and f"shape: {shape}" in block, signature
        for output in ("probabilities", "label", "top_k_labels", "top_k_scores", "class_id"):
            assert f"outputs['{output}']" in block
    # numpy keeps the bytes of a JPEG whole (it ends in FF D9, so no NUL is stripped).
    np.save(tmp_path / "image.npy", np.array([Path(files.paths[0]).read_bytes()]))
    run = [cli, "run", "--dir", version, "--tag_set", "serve", "--signature_def"]
    run += ["serving_default", "--inputs", f"image_bytes={tmp_path / 'image.npy'}"]
    printed = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    label = printed.split("Result for output key label:")[1].split()[0]
    assert label == f"[b'{files.class_names[expected[0].argmax()]}']"


def test_serving_default_decodes_webp_where_tensorflow_does(shapes_export):
    import io

    from PIL import Image

    model, version, _, _ = shapes_export
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "WEBP", lossless=True)
    try:
        tf.io.decode_image(buffer.getvalue())
    except tf.errors.InvalidArgumentError:
        pytest.skip(f"TensorFlow {tf.__version__} does not decode WebP")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    out = signature(image_bytes=tf.constant([buffer.getvalue()]))
    expected = model.predict(pixels[None].astype("float32"), verbose=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-4)


def test_a_second_export_to_a_base_folder_in_use_is_refused(shapes_export, tmp_path):
    model, _, files, _ = shapes_export
    base = tmp_path / "models" / "shapes"
    # The lock as another process exporting there would hold it.
    with folder_lock(base), pytest.raises(FileExistsError, match="is writing"):
        export_version(model, base, files.class_names)
    assert not base.exists() or versions_in(base) == []
