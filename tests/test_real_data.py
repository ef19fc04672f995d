"""Real photos, real ImageNet weights, the command line's default settings (slow)."""

import json
import time

import keras
import pytest

from tfinetune import build_classifier, fine_tune, image_folder_datasets, scan_image_folder
from tfinetune.cli import main
from tfinetune.cli.exports import export_run
from tfinetune.serving.export import export_version
from tfinetune.serving.tflite import convert_to_tflite
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
    assert_export_matches_model(model, run / "saved_model" / "1", files.paths, class_names, 224)


@pytest.fixture(scope="module")
def flowers_run(tmp_path_factory):
    """#4's recipe on flower_photos_small at 224 px, trained once for the tests below: the
    command line's stages (4 head epochs at 1e-3, then the top 4 blocks and the head for 6
    epochs, the head at 5e-4 and the lowest block 10x slower; label smoothing 0.1)."""
    root = asset("datasets", "flower_photos_small")
    weights, tmp = asset("weights"), tmp_path_factory.mktemp("flowers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFINETUNE_WEIGHTS_DIR", str(weights))
        patch.setenv("KERAS_HOME", str(tmp / "keras"))
        keras.utils.set_random_seed(1337)
        data = image_folder_datasets(root / "train", root / "val", image_size=224, seed=1337)
        model = build_classifier("mobilenet_v2", len(data.class_names), weights="imagenet")
    head_stage, fine_tune_stage = default_stages(
        model, epochs=6, freeze_epochs=4, learning_rate=1e-3, lr_mult=10, train_groups=5
    )
    started = time.perf_counter()
    options = {"label_smoothing": 0.1, "verbose": 0}
    head = fine_tune(model, data.train, data.val, stages=[head_stage], **options)
    head_accuracy = model.evaluate(data.val, verbose=0, return_dict=True)["accuracy"]
    fine_tune(model, data.train, data.val, stages=[fine_tune_stage], **options)
    return {
        "root": root,
        "model": model,
        "class_names": data.class_names,
        "head": head,
        "head_accuracy": head_accuracy,
        "fine_tune_stage": fine_tune_stage,
        "seconds": time.perf_counter() - started,
        "out": tmp,
    }


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # evaluate: length unknown
def test_discriminative_fine_tuning_on_flowers_beats_its_head_stage(flowers_run):
    """#4's bar: >= 88 % after the partly unfrozen stage with discriminative rates, and
    better than after the head stage."""
    model, root = flowers_run["model"], flowers_run["root"]
    data = image_folder_datasets(root / "train", root / "val", image_size=224, seed=1337)
    rates = learning_rates_of(model.optimizer)
    accuracy = model.evaluate(data.val, verbose=0, return_dict=True)["accuracy"]
    head_accuracy = flowers_run["head_accuracy"]
    print(
        f"flowers, 224 px: head stage {head_accuracy:.4f}, unfrozen stage {accuracy:.4f}, "
        f"{flowers_run['seconds']:.0f} s; rates {rates}"
    )
    assert len(set(rates.values())) == flowers_run["fine_tune_stage"].train_groups == 5
    assert accuracy >= 0.88
    assert accuracy > head_accuracy
    assert flowers_run["head"].stages[0][0] == "head"


@pytest.mark.slow
def test_exports_of_the_fine_tuned_model_agree_with_it_on_real_photos(flowers_run):
    """#11's bar on flower_photos_small/val: the SavedModel agrees on every image through
    each signature (within 1e-4), float16 TFLite on >= 99 %, int8 is at most a third of
    float32's size and loses at most 2 points. Each export is verified in a fresh process."""
    root, out = flowers_run["root"], flowers_run["out"]
    run = out / "run"  # a run folder as `tfinetune train` leaves it
    run.mkdir()
    flowers_run["model"].save(run / "model.keras")
    export_version(
        flowers_run["model"], run / "saved_model", flowers_run["class_names"], version=1,
        metadata={"training_data": str(root / "train"), "validation_data": str(root / "val")},
    )  # fmt: skip
    path, saved = export_run(run, out / "models" / "flowers")
    print(saved)
    assert path.name == "1" and saved.images == 125
    assert set(saved.agreement) == {"serving_default", "serve_images", "serve_examples"}
    assert all(a == 1.0 for a in saved.agreement.values())
    assert all(d <= 1e-4 for d in saved.max_abs_diff.values())
    float32_size = len(convert_to_tflite(flowers_run["model"], "float32"))
    lite = {}
    for quantize in ("float16", "int8"):
        folder, lite[quantize] = export_run(run, out / quantize, format="tflite", quantize=quantize)
        lite[quantize].size = (folder / "model.tflite").stat().st_size
        print(lite[quantize], f"\n  size {lite[quantize].size / 1e6:.2f} MB")
    assert lite["float16"].agreement["tflite"] >= 0.99
    print(f"float32 TFLite: {float32_size / 1e6:.2f} MB")
    assert lite["int8"].size <= float32_size / 3
    assert lite["int8"].accuracy["tflite"] >= lite["int8"].keras_accuracy - 0.02
