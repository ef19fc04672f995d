"""The end of a run: report on the validation data, calibrate the probabilities, write it down.

A single-label model is calibrated here: a temperature is fitted on the validation data
(`tfinetune.evaluation.calibration`) and folded into the model's output layer
(`tfinetune.models.heads.apply_temperature`), so that the saved model, every export and
every serving signature give the calibrated probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from tfinetune.data.datasets import ImageData
from tfinetune.evaluation.calibration import MIN_EXAMPLES, calibrated_report, fit_temperature
from tfinetune.evaluation.multilabel import MultiLabelReport
from tfinetune.evaluation.outputs import write_evaluation
from tfinetune.evaluation.predict import predict_dataset, report_for
from tfinetune.evaluation.regression import RegressionReport
from tfinetune.evaluation.report import ClassificationReport
from tfinetune.models.classifier import modality_of
from tfinetune.models.heads import apply_temperature, task_of
from tfinetune.models.mirror import mirrors
from tfinetune.runs.skipped import name_validation_failures, split_size
from tfinetune.serving.export import THRESHOLDS_FILE


def calibrate(
    model: keras.Model,
    dataset: tf.data.Dataset,
    class_names: list[str],
) -> ClassificationReport:
    """Fit a temperature on held-out data and fold it into a single-label model.

    Predicts `dataset` once, fits the temperature that minimises the negative
    log-likelihood, and divides the output layer's logits by it. Accuracy is unchanged;
    the returned report holds the probabilities before and after. A `ValueError` says
    when the data cannot tell the temperature (fewer than `MIN_EXAMPLES` examples, a best
    temperature at the edge of the range, or one that would raise the calibration error
    on these examples); the model is then left as it was.

    Args:
        model: a single-label classifier (softmax output).
        dataset: held-out `(inputs, labels)` batches, not used for training, with at least
            `MIN_EXAMPLES` examples.
        class_names: the class names, in label order. The temperature scales what the
            model itself predicts: for mirror averaging, build it with `mirror=True`.

    Example:
    >>> import numpy as np
    >>> from tfinetune.models.heads import build_head
    >>> x = keras.Input((1,))
    >>> m = keras.Model(x, build_head(x, 2, dropout=0.0))  # says P(yes) = sigmoid(2 v)
    >>> m.get_layer("head_predictions").set_weights([np.array([[-1.0, 1.0]]), np.zeros(2)])
    >>> rng = np.random.default_rng(0)
    >>> v = rng.normal(size=(400, 1)).astype("float32")
    >>> y = (v[:, 0] + rng.normal(size=400) > 0).astype(int)  # truly about sigmoid(1.7 v)
    >>> r = calibrate(m, tf.data.Dataset.from_tensor_slices((v, y)).batch(100), ["no", "yes"])
    >>> 1.0 < r.temperature < 1.6, r.accuracy == float(np.mean(r.uncalibrated.argmax(1) == y))
    (True, True)
    """
    labels, probs = predict_dataset(model, dataset)
    return _calibrate(model, report_for("single_label", labels, probs, class_names))


def _calibrate(model: keras.Model, report: ClassificationReport) -> ClassificationReport:
    temperature = fit_temperature(report.labels, report.probabilities)
    calibrated = calibrated_report(report, temperature)
    if calibrated.expected_calibration_error > report.expected_calibration_error:
        raise ValueError(
            f"the best temperature ({temperature:.3g}) would raise the calibration error on "
            f"these examples ({report.expected_calibration_error:.4f} to "
            f"{calibrated.expected_calibration_error:.4f}): the data cannot tell it."
        )
    apply_temperature(model, temperature)
    return calibrated


def _calibrate_if_possible(
    model: keras.Model, report: ClassificationReport, verbose: int
) -> ClassificationReport:
    """The calibrated report, or the same one with a note of why the data could not say."""
    if len(report.labels) < MIN_EXAMPLES:
        why = (
            f"{len(report.labels)} validation examples are too few to fit a temperature "
            f"(at least {MIN_EXAMPLES})."
        )
    else:
        try:
            return _calibrate(model, report)
        except ValueError as error:
            why = str(error)
    if verbose:
        print(f"Not calibrated: {why}")
    return report


def evaluate_validation(
    model: keras.Model,
    data: ImageData,
    out: Path,
    seconds: float,
    tta: bool = False,
    verbose: int = 1,
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """Report on the validation data, calibrate, and write the evaluation into the run folder.

    A single-label model with at least `MIN_EXAMPLES` validation examples is calibrated on
    them (the report shows the calibration error before and after). A multi-label report's
    thresholds are each class's best F1 on this data: the thresholds the run then serves
    with, also written to `thresholds.json`.

    Args:
        model: the trained model (calibrated in place).
        data: the run's data, with `val`.
        out: the run folder.
        seconds: the training time so far, for `metrics.json`.
        tta: test-time augmentation with horizontal flips (images).
        verbose: say when the model is not calibrated.
    """
    modality = modality_of(model)
    mirrored = mirrors(model)  # a model that averages the mirrors itself
    tta = (tta or mirrored) and modality == "image"  # flips are for images
    labels, probs = predict_dataset(model, data.val, tta=tta and not mirrored)
    report = report_for(data.task, labels, probs, data.class_names)
    if isinstance(report, ClassificationReport) and task_of(model) == "single_label":
        report = _calibrate_if_possible(model, report, verbose)
    if data.task == "multi_label":
        (out / THRESHOLDS_FILE).write_text(json.dumps(report.thresholds.tolist()) + "\n")
    expected = split_size(data, "val")
    if modality == "image" and expected is not None and len(labels) < expected:
        name_validation_failures(data, out, verbose)  # a scan did not decode them all
    # Each prediction's file, where the files that failed are known (records: the manifest).
    val, skipped = data.val_files, data.skipped_in_validation
    known = val is not None and len(labels) == len(val) - len(skipped)
    paths = None
    if known:
        named = val.texts if modality == "text" else val.paths
        paths = [path for i, path in enumerate(named) if i not in skipped]
    write_evaluation(
        out, report, paths, data.bad_files, modality=modality, seconds=seconds, tta=tta
    )
    return report
