"""`tfinetune export`, `verify`, and `predict`/`evaluate` on every kind of artifact."""

import json

import pytest

from tfinetune.cli import main
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.serving import verify as verify_module

# Each export and verify loads the artifact in a fresh process; the floor job leaves them out
# (test_export.py and test_tflite.py cover the artifacts themselves on every version).
pytestmark = pytest.mark.processes


def _predicted_labels(model: str, images: list[str], capsys) -> list[str]:
    capsys.readouterr()
    assert main(["predict", model, *images]) == 0
    return [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def exports(trained_run, tmp_path_factory):
    """The shared tiny run exported twice as SavedModel versions and once as int8 TFLite."""
    _, run = trained_run
    out = tmp_path_factory.mktemp("exports")
    for _ in range(2):
        assert main(["export", str(run), "--out", str(out / "models" / "shapes")]) == 0
    args = ["export", str(run), "--format", "tflite", "--quantize", "int8"]
    assert main([*args, "--out", str(out / "lite")]) == 0
    return out


def test_export_writes_verified_versions_in_tf_servings_layout(trained_run, exports, capsys):
    _, run = trained_run
    base = exports / "models" / "shapes"
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # nothing temporary left
    for version in ("1", "2"):
        assert (base / version / "saved_model.pb").is_file()
        contract = json.loads((base / version / "assets.extra" / "preprocessing.json").read_text())
        assert contract["image_size"] == [32, 32] and contract["resize"] == "stretch"
        assert contract["keras_model"] == str((run / "model.keras").resolve())
    assert (base / "1" / "assets.extra" / "labels.txt").read_text() == "cross\nring\n"
    code = main(["export", str(run), "--out", str(base), "--version", "1"])
    assert code == 2 and "Version 1 already exists" in capsys.readouterr().err
    assert main(["verify", str(base / "2"), "--data", str(trained_run[0])]) == 0
    printed = capsys.readouterr().out
    for route in ("serving_default", "serve_images", "serve_examples"):
        assert f"  {route} " in printed and "100.00%" in printed.split(route)[1].splitlines()[0]
    assert printed.rstrip().endswith("passed")


def test_tflite_export_has_labels_and_contract_beside_the_model(exports, trained_run, capsys):
    lite = exports / "lite"
    assert sorted(p.name for p in lite.iterdir()) == [
        ".tfinetune",
        "labels.txt",
        "model.tflite",
        "preprocessing.json",
    ]
    contract = json.loads((lite / "preprocessing.json").read_text())
    assert contract["quantize"] == "int8" and contract["input"].startswith("uint8")
    assert main(["verify", str(lite / "model.tflite"), "--data", str(trained_run[0])]) == 0
    assert "(int8)" in capsys.readouterr().out


def test_predict_and_evaluate_take_every_kind_of_artifact(trained_run, exports, tmp_path, capsys):
    data, run = trained_run
    images = sorted(str(p) for p in (data / "cross").glob("*.jpg"))[:4]
    expected = _predicted_labels(str(run), images, capsys)
    artifacts = [
        exports / "models" / "shapes",  # a base folder: its highest version
        exports / "models" / "shapes" / "1",
        run / "model.keras",
        exports / "lite" / "model.tflite",
    ]
    for artifact in artifacts:
        assert _predicted_labels(str(artifact), images, capsys) == expected, artifact
    for i, artifact in enumerate(artifacts[2:]):
        out = tmp_path / f"eval{i}"
        assert main(["evaluate", str(artifact), "--data", str(data), "--out", str(out)]) == 0
        assert json.loads((out / "metrics.json").read_text())["num_examples"] == 20


def test_a_failed_verification_fails_the_export_and_leaves_no_version(
    trained_run, tmp_path, monkeypatch, capsys
):
    _, run = trained_run
    # A SavedModel may not differ at all: the export must fail, and say why.
    monkeypatch.setitem(verify_module.CRITERIA, "saved_model", (1.0, -1.0, None))
    base = tmp_path / "models" / "shapes"
    assert main(["export", str(run), "--out", str(base)]) == 1
    err = capsys.readouterr().err
    assert "Verification failed" in err and "FAILED: serving_default" in err
    assert "Nothing was written" in err
    assert not base.exists() or list(base.iterdir()) == []


def test_verify_fails_against_a_model_that_is_not_the_reference(trained_run, exports, capsys):
    data, _ = trained_run
    from tfinetune import build_classifier

    other = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    other.save(exports / "other.keras")
    args = ["verify", str(exports / "models" / "shapes" / "1"), "--data", str(data)]
    assert main([*args, "--reference", str(exports / "other.keras")]) == 1
    assert "FAILED: serving_default: outputs differ" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{tmp}", "--out", "{tmp}/m"], "holds no model.keras"),
        (["export", "{run}", "--out", "{tmp}/m", "--data", "{tmp}/unknown"], "['star']"),
        (["predict", "{tmp}/bad.tflite", "x.jpg"], "is not a usable TFLite model"),
        (["predict", "{tmp}/none.keras", "x.jpg"], "does not exist"),
    ],
)
def test_bad_export_input_is_a_clear_error(trained_run, tmp_path, capsys, args, message):
    _, run = trained_run
    write_shapes_folder(tmp_path / "unknown", ["star"], 1, size=32)  # a class the model lacks
    (tmp_path / "bad.tflite").write_bytes(b"garbage" * 20)
    (tmp_path / "labels.txt").write_text("cross\nring\n")
    (tmp_path / "preprocessing.json").write_text('{"image_size": [32, 32]}')
    assert main([a.format(run=run, tmp=tmp_path) for a in args]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_export_format_is_a_usage_error(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(trained_run[1]), "--format", "onnx", "--out", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
