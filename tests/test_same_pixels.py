"""One decode everywhere: a real run's SavedModel agrees with its Keras model on every route.

Before the one-decode change, `tfinetune train` at `--image-size 96` on hymenoptera shipped a
SavedModel whose `serve_images` agreed with the Keras model on 94.8 % of the validation photos
(largest probability difference 0.17): training decoded large JPEGs at a reduced DCT scale,
`serve_images` resized the full-size pixels. These runs hold every signature to `verify`'s
SavedModel criteria (100 % agreement, probabilities within 1e-4) at three input sizes, on the
validation photos and on photos upscaled to phone-camera size (4000x3000), where the two old
routes parted most.
"""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from tfinetune.cli import main
from tfinetune.serving.verify import verify_artifact

from conftest import asset

pytestmark = [pytest.mark.slow, pytest.mark.processes]
ROUTES = ("serving_default", "serve_images", "serve_examples")


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory):
    """Two photos of each class upscaled to 4000x3000 JPEGs, 12 to 60 times a model's input."""
    root = tmp_path_factory.mktemp("large")
    for name in ("ants", "bees"):
        (root / name).mkdir()
        sources = sorted(asset("datasets", "hymenoptera_data", "val", name).glob("*.jpg"))[:2]
        for i, source in enumerate(sources):
            image = tf.io.decode_jpeg(tf.io.read_file(str(source)), channels=3)
            big = tf.cast(tf.clip_by_value(tf.image.resize(image, (3000, 4000)), 0, 255), tf.uint8)
            tf.io.write_file(str(root / name / f"large_{i}.jpg"), tf.io.encode_jpeg(big))
    return root


@pytest.mark.parametrize("size", [96, 160, 224])
def test_a_runs_savedmodel_passes_verify_on_every_signature_at_any_size(
    size, large_photos, tmp_path, capsys
):
    data = asset("datasets", "hymenoptera_data")
    weights = asset("weights", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    run = tmp_path / "run"
    args = ["train", "--data", str(data / "train"), "--val-data", str(data / "val")]
    args += ["--backbone", "mobilenet_v2_035", "--weights", str(weights)]
    args += ["--image-size", str(size), "--freeze-epochs", "2", "--epochs", "0"]
    args += ["--augment", "none", "--set", "evaluation.tta=false", "--out", str(run)]
    # train checks its SavedModel on the validation photos through every signature before it
    # moves it into place; a failed check would fail the run.
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    # A model that tells ants from bees, not a constant one: one class alone would score
    # 54.2 % (83 bees of 153); the frozen 0.35 features reach about 87 % when fully probed.
    assert accuracy >= 0.6
    for folder in (large_photos, data / "val"):
        result = verify_artifact(run / "saved_model" / "1", folder, raise_on_failure=False)
        print(size, folder.name, result.agreement, result.max_abs_diff)
        assert result.passed, str(result)
        assert sorted(result.agreement) == sorted(ROUTES)
        assert min(result.agreement.values()) == 1.0
        assert max(result.max_abs_diff.values()) <= 1e-4
    out = tmp_path / "models" / "bees"
    export = ["export", str(run), "--format", "saved_model", "--out", str(out)]
    assert main([*export, "--data", str(large_photos)]) == 0, capsys.readouterr().err[-2000:]
    assert (out / "1" / "saved_model.pb").is_file()
