"""TFLite exports: each quantization converts, loads and predicts like the Keras model."""

import numpy as np
import pytest

from tfinetune import TFLiteClassifier, build_classifier, export_tflite, load_classifier
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.serving.tflite import convert_to_tflite


@pytest.fixture(scope="module")
def small_model():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    return model, images, model.predict(images.astype("float32"), verbose=0)


@pytest.mark.parametrize(
    "quantize, tolerance", [("float32", 1e-5), ("float16", 1e-3), ("dynamic", 2e-2), ("int8", 5e-2)]
)
def test_each_quantization_predicts_like_keras(small_model, tmp_path, quantize, tolerance):
    model, images, expected = small_model
    out = export_tflite(
        model, tmp_path / "lite", ["a", "b", "c"], quantize=quantize, representative=list(images)
    )
    assert (out / "labels.txt").read_text() == "a\nb\nc\n"
    classifier = load_classifier(out / "model.tflite")
    assert isinstance(classifier, TFLiteClassifier) and classifier.quantize == quantize
    assert classifier.image_size == (32, 32)
    # int8 takes the raw uint8 pixels: scale 1, zero point 0.
    expected_input = "uint8" if quantize == "int8" else "float32"
    assert np.dtype(classifier._input["dtype"]).name == expected_input
    np.testing.assert_allclose(classifier.predict_pixels(images), expected, atol=tolerance)


def test_int8_is_about_a_quarter_of_float32(small_model):
    model, images, _ = small_model
    float32 = len(convert_to_tflite(model, "float32"))
    int8 = len(convert_to_tflite(model, "int8", list(images)))
    assert int8 <= float32 / 3


def test_int8_without_calibration_images_and_unknown_quantizations_are_refused(small_model):
    model, _, _ = small_model
    with pytest.raises(ValueError, match="needs representative images"):
        convert_to_tflite(model, "int8")
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        convert_to_tflite(model, "int4")


def test_a_corrupt_tflite_file_is_a_clear_error(small_model, tmp_path):
    model, _, _ = small_model
    out = export_tflite(model, tmp_path / "lite", ["a", "b", "c"])
    (out / "model.tflite").write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(ValueError, match=r"model\.tflite' is not a usable TFLite model"):
        load_classifier(out)


def test_files_through_the_tflite_model_match_the_keras_model(small_model, tmp_path):
    model, _, _ = small_model
    folder = write_shapes_folder(tmp_path / "d", ["ring", "star"], 2, size=40, image_format="png")
    paths = sorted(str(p) for p in folder.rglob("*.png"))
    classifier = load_classifier(export_tflite(model, tmp_path / "lite", ["a", "b", "c"]))
    from tfinetune.data.images import load_image

    pixels = np.stack([load_image(p, 32).numpy() for p in paths]).astype("float32")
    expected = model.predict(pixels, verbose=0)
    np.testing.assert_allclose(classifier.predict_files(paths), expected, atol=1e-5)
