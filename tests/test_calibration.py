"""Temperature scaling: the fit, the model that carries it, and the run that records it."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_hub import save_tiny_text

from tfinetune.evaluation.calibration import (
    calibrated_report,
    fit_temperature,
    negative_log_likelihood,
    scale_probabilities,
)
from tfinetune.evaluation.report import classification_report
from tfinetune.models.heads import apply_temperature, build_head
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.train import train_run
from tfinetune.serving.export import read_contract


def _sample(temperature: float, n: int = 3000, seed: int = 0):
    """Probabilities `p`, and labels drawn as if the true ones were `p` at `temperature`."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.7] * 4, n)
    truth = scale_probabilities(p, temperature)
    labels = (rng.random((n, 1)) > truth.cumsum(axis=1)).sum(axis=1)
    return labels, p


@pytest.mark.parametrize("temperature", [0.4, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(temperature):
    labels, p = _sample(temperature)
    assert fit_temperature(labels, p) == pytest.approx(temperature, rel=0.12)


def test_calibration_lowers_the_error_and_keeps_every_top_class():
    labels, p = _sample(0.4)  # the model is under-confident, as after label smoothing
    before = classification_report(labels, p, list("abcd"))
    t = fit_temperature(labels, p)
    after = calibrated_report(before, t)
    assert np.array_equal(after.predictions, before.predictions)
    assert after.accuracy == before.accuracy
    # Bars from benchmarks/test_bars.py (this sample at seeds 0-9): the error is 0.191-0.213
    # before and 0.009-0.023 after, so 0.1 and 0.03 hold with room at any seed.
    assert before.expected_calibration_error > 0.1
    assert after.expected_calibration_error < 0.03
    assert after.uncalibrated_calibration_error == before.expected_calibration_error
    assert negative_log_likelihood(labels, after.probabilities) < negative_log_likelihood(labels, p)
    data = after.to_dict()["calibration"]
    assert data["temperature"] == t and data["expected_calibration_error_before"] > 0.1
    shown = f"{before.expected_calibration_error:.4f} -> {after.expected_calibration_error:.4f}"
    assert shown in str(after) and "temperature" in after.to_markdown()


def test_too_few_examples_to_fit_is_a_clear_error():
    with pytest.raises(ValueError, match=r"at least 10 held-out examples.*Received: 4"):
        fit_temperature(np.array([0, 1, 0, 1]), np.full((4, 2), 0.5))


def test_the_temperature_lives_in_the_model_output_layer():
    x = keras.Input((6,))
    model = keras.Model(x, build_head(x, 3, dropout=0.0))
    inputs = np.random.default_rng(1).normal(size=(8, 6)).astype("float32") * 3
    before = np.asarray(model(inputs))
    apply_temperature(model, 0.5)
    after = np.asarray(model(inputs))
    np.testing.assert_allclose(after, scale_probabilities(before, 0.5), atol=1e-5)
    assert np.array_equal(after.argmax(1), before.argmax(1))
    with pytest.raises(ValueError, match="above 0"):
        apply_temperature(model, 0.0)
    multi = keras.Model(x, build_head(x, 3, task="multi_label"))
    with pytest.raises(ValueError, match="Only a single-label model"):
        apply_temperature(multi, 2.0)


def _reviews(path, n: int = 120, noise: float = 0.15):
    """Two word lists, a label each, with a share of the labels flipped: a model learns the
    words and still makes mistakes, so the validation data can tell a temperature."""
    rng = np.random.default_rng(0)
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "broken", "poor", "bad"]
    rows = ["text,label"]
    for i in range(n):
        label = i % 2 if rng.random() >= noise else 1 - i % 2
        words = " ".join(rng.choice(good if i % 2 else bad, 2))
        rows.append(f"{words} thing,{['negative', 'positive'][label]}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _run(tmp_path, val_split: float, saved_model: bool = True, verbose: int = 0):
    hub = save_tiny_text(tmp_path / "hub")
    e = Experiment().with_values(
        {"data.train": str(_reviews(tmp_path / "reviews.csv")), "data.val_split": val_split,
         "model.backbone": f"hub:{hub}", "stages.1.epochs": 1, "stages.2.epochs": 3,
         "stages.2.learning_rate": 0.03, "stages.2.schedule": "constant", "data.batch_size": 8,
         "export.saved_model": saved_model}
    )  # fmt: skip
    return train_run(e, tmp_path / "run", verbose=verbose)


def test_a_run_calibrates_on_its_validation_data_and_serves_calibrated(tmp_path):
    result = _run(tmp_path, 0.5)
    run, report = result.out_dir, result.report
    metrics = json.loads((run / "metrics.json").read_text())
    t = metrics["calibration"]["temperature"]
    assert t == report.temperature and t != 1.0
    before = metrics["calibration"]["expected_calibration_error_before"]
    assert metrics["expected_calibration_error"] < before
    assert report.accuracy == float(np.mean(report.uncalibrated.argmax(1) == report.labels))
    _, contract = read_contract(run / "saved_model" / "1")
    assert contract["calibration"]["temperature"] == t
    # The saved model and the export give the calibrated probabilities the report holds.
    texts = tf.constant(result_texts(tmp_path / "reviews.csv", report))
    model = keras.saving.load_model(run / "model.keras")
    np.testing.assert_allclose(model.predict(texts, verbose=0), report.probabilities, atol=1e-5)
    served = tf.saved_model.load(str(run / "saved_model" / "1")).signatures["serving_default"]
    probs = served(text=texts)["probabilities"].numpy()
    np.testing.assert_allclose(probs, report.probabilities, atol=1e-5)
    assert "before" in (run / "summary.md").read_text()


def result_texts(csv, report) -> list[str]:
    """The validation texts of the run, in the report's order (the run's seeded split)."""
    from tfinetune.data.text import read_text_csv, text_datasets

    data = text_datasets(read_text_csv(csv), val_split=0.5, seed=1337)
    assert len(data.val_files) == len(report.labels)
    return data.val_files.texts


def test_a_run_with_too_few_validation_examples_says_it_is_not_calibrated(tmp_path, capsys):
    result = _run(tmp_path, 0.05, saved_model=False, verbose=1)
    assert "Not calibrated: 6 validation examples are too few" in capsys.readouterr().out
    assert result.report.temperature is None
    assert not (result.out_dir / "saved_model").exists()
    assert (result.out_dir / "model.keras").is_file()
    assert "calibration" not in json.loads((result.out_dir / "metrics.json").read_text())


def test_a_temperature_the_data_cannot_tell_is_refused_and_the_model_left_alone():
    from tfinetune.runs.validation import calibrate

    x = keras.Input((1,))
    model = keras.Model(x, build_head(x, 2, dropout=0.0))
    model.get_layer("head_predictions").set_weights([np.array([[-1.0, 1.0]]), np.zeros(2)])
    v = np.linspace(-2, 2, 40, dtype="float32")[:, None]
    data = tf.data.Dataset.from_tensor_slices((v, (v[:, 0] > 0).astype(int))).batch(8)
    with pytest.raises(ValueError, match="edge of the range"):  # no mistakes: T -> 0
        calibrate(model, data, ["no", "yes"])
    assert model.get_layer("head_predictions").get_weights()[0].tolist() == [[-1.0, 1.0]]
