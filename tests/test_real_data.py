"""Real photos, real ImageNet weights, the command line's default settings (slow)."""

import json

import keras
import pytest

from tfinetune import scan_image_folder
from tfinetune.cli import main

from conftest import asset
from test_export import assert_export_matches_model


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, minimum", [("hymenoptera_data", 0.93), ("flower_photos_small", 0.85)]
)
def test_default_train_reaches_accuracy_and_export_matches(dataset, minimum, tmp_path, monkeypatch):
    monkeypatch.setenv("TFINETUNE_WEIGHTS_DIR", str(asset("weights")))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached weights elsewhere
    root = asset("datasets", dataset)
    run = tmp_path / "run"
    args = ["train", "--data", str(root / "train"), "--val-data", str(root / "val")]
    assert main([*args, "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"{dataset}: accuracy {metrics['accuracy']:.4f} in {metrics['seconds']:.0f} s")
    assert metrics["accuracy"] >= minimum
    figures = ("training_curves.png", "confusion_matrix.png", "reliability.png", "top_losses.png")
    for name in (*figures, "predictions.png"):
        assert (run / name).stat().st_size > 10_000, name
    assert f"accuracy: **{metrics['accuracy']:.2%}**" in (run / "summary.md").read_text()

    # Every validation image, as stored on disk, through the SavedModel in another process.
    model = keras.models.load_model(run / "model.keras")
    files = scan_image_folder(root / "val")
    class_names = (run / "labels.txt").read_text().split()
    assert_export_matches_model(model, run / "saved_model", files.paths, class_names, 224)
