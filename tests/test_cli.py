import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfinetune import image_folder_datasets, predict_dataset
from tfinetune.cli import main
from tfinetune.models.catalogue import CATALOGUE
from tfinetune.serving.export import read_contract
from tfinetune.serving.inference import load_classifier

RUN_FILES = (
    "labels.txt",
    "history.json",
    "training_curves.png",
    "model.keras",
    "saved_model/1/saved_model.pb",
    "saved_model/1/assets.extra/labels.txt",
)
EVALUATION_FILES = (
    "metrics.json",
    "summary.md",
    "confusion_matrix.png",
    "reliability.png",
    "top_losses.json",
    "top_losses.png",
    "predictions.png",
)


def test_train_leaves_a_complete_run_folder(trained_run):
    data, run = trained_run
    for name in (*RUN_FILES, *EVALUATION_FILES):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"cross", "ring"}
    assert {"precision", "recall", "f1", "support"} <= set(metrics["per_class"]["ring"])
    assert {"macro_avg", "weighted_avg", "expected_calibration_error"} <= set(metrics)
    assert metrics["num_examples"] == 4
    # The reported accuracy is the saved model's on the run's own validation split.
    model = keras.saving.load_model(run / "model.keras")
    val = image_folder_datasets(data, image_size=32, seed=1337, augment=None).val
    labels, probs = predict_dataset(model, val)
    assert metrics["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == labels)))
    assert metrics["accuracy"] == pytest.approx(np.trace(metrics["confusion_matrix"]) / 4)
    assert [Path(s["path"]).name for s in metrics["skipped_files"]] == ["broken.jpg"]
    assert (run / "training_curves.png").stat().st_size > 10_000


@pytest.mark.parametrize("tta", [False, True])
def test_evaluate_writes_metrics_and_figures_for_a_folder(trained_run, tmp_path, tta):
    data, run = trained_run
    args = ["evaluate", str(run), "--data", str(data), "--out", str(tmp_path)]
    assert main(args + (["--tta"] if tta else [])) == 0
    for name in EVALUATION_FILES:
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_examples"] == 20 and metrics["tta"] is tta
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    losses = json.loads((tmp_path / "top_losses.json").read_text())
    assert len(losses) == 9 and losses[0]["loss"] >= losses[-1]["loss"]
    assert all(Path(t["path"]).parent.parent == data for t in losses)


def test_predict_prints_one_json_line_per_image(trained_run, capsys):
    data, run = trained_run
    images = sorted(str(p) for p in (data / "cross").iterdir())[:2]
    bad, folder = str(data / "ring" / "broken.jpg"), data / "ring"
    assert main(["predict", str(run / "saved_model"), *images, bad, str(folder)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # a folder stands for each of its files, sorted
    in_folder = sorted(str(p) for p in folder.iterdir())
    assert [line["path"] for line in lines] == [*images, bad, *in_folder]
    # What the SavedModel answers is what the run's Keras model predicts for those files.
    keras_model = load_classifier(run / "model.keras")
    expected = keras_model.predict_files(images)
    for line, probs in zip(lines[:2], expected, strict=True):
        assert line["label"] == keras_model.class_names[int(probs.argmax())]
        assert line["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
        assert "top" not in line
    assert "cannot be decoded" in lines[2]["error"]
    assert [line.get("error") is not None for line in lines[3:]] == [p == bad for p in in_folder]


def test_predict_top_k_lists_the_likeliest_classes_in_order(trained_run, capsys):
    data, run = trained_run
    folder = data / "cross"
    assert main(["predict", str(run), str(folder), "--top-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(list(folder.iterdir())) == 10
    for line in lines:
        top = line["top"]  # 3 asked, the model knows 2 classes
        assert sorted(t["label"] for t in top) == ["cross", "ring"]
        assert top[0] == {"label": line["label"], "probability": line["probability"]}
        assert top[0]["probability"] >= top[1]["probability"]
        assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "--data", "/no/such/dir", "--out", "x"],
            "Data folder not found: '/no/such/dir'",
        ),
        (["train", "--data", ".", "--backbone", "resnet9000", "--out", "x"], "Unknown backbone"),
        (["predict", "/no/such/model", "a.jpg"], "'/no/such/model' does not exist. Pass a"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_train_refuses_a_non_empty_out_folder(trained_run, capsys):
    data, run = trained_run
    args = ["train", "--data", str(data), "--backbone", "convnet_tiny", "--out", str(run)]
    assert main(args) == 2
    assert "is not empty" in capsys.readouterr().err


def test_backbones_lists_names_sizes_parameters_normalisation_and_groups(capsys):
    assert main(["backbones", "mobilenet_v2", "resnet50", "convnet_tiny"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["mobilenet_v2"][1:] == ["224", "2,257,984", "tf", "19", "yes"]
    assert rows["resnet50"][1:] == ["224", "23,587,712", "caffe", "17", "yes"]
    assert rows["convnet_tiny"][-1] == "no"
    assert main(["backbones", "resnet5O"]) == 2
    assert "Did you mean 'resnet50'" in capsys.readouterr().err


def test_backbones_lists_the_catalogue_without_loading_keras_or_tensorflow():
    code = ("import sys\nfrom tfinetune.cli import main\nmain(['backbones'])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[-1] == "False False"
    assert sum(line.split()[0] in CATALOGUE for line in lines if line.strip()) == len(CATALOGUE)
    assert "yamnet" in done.stdout  # and the TF Hub models by kind


def test_lr_find_prints_suggestions_and_writes_the_curve(trained_run, tmp_path, capsys):
    data, _ = trained_run
    args = ["lr-find", "--data", str(data), "--backbone", "convnet_tiny", "--weights", "none"]
    args += ["--image-size", "32", "--batch-size", "4", "--steps", "30", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "valley:" in out and "steepest:" in out
    curve = json.loads((tmp_path / "lr_finder.json").read_text())
    assert len(curve["learning_rates"]) == len(curve["losses"]) <= 30  # data repeated as needed
    assert curve["learning_rates"][0] == pytest.approx(1e-7)
    assert f"{curve['suggestions']['valley']:.2e}" in out
    assert (tmp_path / "lr_finder.png").stat().st_size > 5000
    assert main([*args[:-2], "--out", str(tmp_path / "again"), "--steps", "2"]) == 2
    assert "num_steps must be a whole number from 4 to 1000" in capsys.readouterr().err


def test_lr_find_takes_trains_data_flags_a_csv_and_set(trained_run, tmp_path, capsys):
    data, _ = trained_run
    rows = "".join(f"{p.relative_to(data)},{p.parent.name}\n" for p in sorted(data.rglob("*.jpg")))
    (data / "all.csv").write_text("path,label\n" + rows)
    args = ["lr-find", "--csv", str(data / "all.csv"), "--backbone", "convnet_tiny", "--weights",
            "none", "--image-size", "32", "--batch-size", "4", "--augment", "none",
            "--steps", "8", "--set", "model.hidden_units=[8]",
            "--out", str(tmp_path / "lr")]  # fmt: skip
    assert main(args) == 0
    assert len(json.loads((tmp_path / "lr" / "lr_finder.json").read_text())["losses"]) <= 8
    bad = [*args[:-2], "--set", "model.pooling=mean", "--out", str(tmp_path / "lr2")]
    assert main(bad) == 2
    assert "model.pooling is 'mean'" in capsys.readouterr().err


def test_train_with_mixing_augmentation_a_schedule_and_crop_resize(trained_run, tmp_path):
    data, _ = trained_run
    args = ["train", "--data", str(data), "--backbone", "convnet_tiny", "--weights", "none"]
    args += ["--image-size", "32", "--epochs", "1", "--freeze-epochs", "1", "--batch-size", "8"]
    args += ["--augment", "flip,mixup", "--schedule", "one_cycle", "--resize", "crop"]
    args += ["--balance-classes", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Validation labels were one-hot too (MixUp mixes them); the report has one class each.
    assert metrics["num_examples"] == 4 and metrics["class_names"] == ["cross", "ring"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 4
    _, facts = read_contract(tmp_path / "run" / "saved_model" / "1")
    assert facts["resize"] == "crop"
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [s["name"] for s in history["stages"]] == ["head", "fine-tune"]
