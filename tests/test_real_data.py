"""Real photos, real ImageNet weights, the command line's default settings (slow)."""

import json
import time

import keras
import pytest

from tfinetune import build_classifier, fine_tune, image_folder_datasets, scan_image_folder
from tfinetune.cli import main
from tfinetune.training.optimizers import learning_rates_of
from tfinetune.training.stages import default_stages

from conftest import asset
from test_export import assert_export_matches_model


@pytest.mark.slow
@pytest.mark.parametrize("dataset, minimum", [("hymenoptera_data", 0.93)])
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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # evaluate: length unknown
def test_discriminative_fine_tuning_on_flowers_beats_its_head_stage(monkeypatch, tmp_path):
    """#4's bar: MobileNetV2 (ImageNet) on flower_photos_small, 224 px, >= 88 % after the
    partly unfrozen stage with discriminative rates, and better than after the head stage."""
    monkeypatch.setenv("TFINETUNE_WEIGHTS_DIR", str(asset("weights")))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    keras.utils.set_random_seed(1337)
    root = asset("datasets", "flower_photos_small")
    data = image_folder_datasets(root / "train", root / "val", image_size=224, seed=1337)
    model = build_classifier("mobilenet_v2", len(data.class_names), weights="imagenet")
    # The command line's recipe: 4 head epochs at 1e-3, then the top 4 blocks and the head
    # for 6 epochs, the head at 5e-4 and the lowest block 10x slower; label smoothing 0.1.
    head_stage, fine_tune_stage = default_stages(
        model, epochs=6, freeze_epochs=4, learning_rate=1e-3, lr_mult=10, train_groups=5
    )
    started = time.perf_counter()
    options = {"label_smoothing": 0.1, "verbose": 0}
    head = fine_tune(model, data.train, data.val, stages=[head_stage], **options)
    head_accuracy = model.evaluate(data.val, verbose=0, return_dict=True)["accuracy"]
    fine_tune(model, data.train, data.val, stages=[fine_tune_stage], **options)
    rates = learning_rates_of(model.optimizer)
    accuracy = model.evaluate(data.val, verbose=0, return_dict=True)["accuracy"]
    seconds = time.perf_counter() - started
    print(
        f"flowers, 224 px: head stage {head_accuracy:.4f}, unfrozen stage {accuracy:.4f}, "
        f"{seconds:.0f} s; rates {rates}"
    )
    assert len(set(rates.values())) == fine_tune_stage.train_groups == 5  # a rate per group
    assert accuracy >= 0.88
    assert accuracy > head_accuracy
    assert head.stages[0][0] == "head"
