"""`evaluate_run`: a model scored on labelled data, the report written to a folder."""

from __future__ import annotations

import os

from tfinetune.atomic import check_output_folder, folder_lock, staged_folder
from tfinetune.data.labelled import labelled_files
from tfinetune.evaluation.multilabel import MultiLabelReport
from tfinetune.evaluation.outputs import write_evaluation
from tfinetune.evaluation.predict import report_for
from tfinetune.evaluation.regression import RegressionReport
from tfinetune.evaluation.report import ClassificationReport
from tfinetune.serving.inference import load_classifier


def evaluate_run(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    data: str | os.PathLike,
    batch_size: int = 32,
    tta: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
) -> ClassificationReport | MultiLabelReport | RegressionReport:
    """Evaluate an exported model (or a run folder) on labelled images: a folder or a CSV.

    Reads every file as stored on disk (a SavedModel decodes it in `serving_default`; with
    `tta`, `serve_images` averages each image and its mirror), and writes the files of
    `write_evaluation` to `out_dir`. Like every run function: what to run on, where to
    write, then the options (`train_run(experiment, out)`, `export_run(run, out)`).

    Args:
        model_path: a run folder, a SavedModel (version or base folder), a `.keras` or a
            `.tflite` file.
        out_dir: where to write the metrics.
        data: a folder with one sub-folder per class (classes the model knows), or a CSV
            file with the columns the run was trained from (any task).
        batch_size: images per call.
        tta: test-time augmentation with horizontal flips.
        verbose: 0 silent, 1 progress bars.

    Example:
    >>> report = evaluate_run("runs/shapes", "runs/shapes/eval", data="more/")  # doctest: +SKIP
    >>> report.accuracy  # doctest: +SKIP
    0.97
    """
    check_output_folder(out_dir, overwrite, "evaluation")
    classifier = load_classifier(model_path)
    with folder_lock(out_dir):
        contract = {**(classifier.contract or {}), "task": classifier.task}
        files = labelled_files(data, classifier.class_names, contract)
        modality = classifier.modality
        inputs = files.texts if modality == "text" else files.paths
        outputs = classifier.predict_files(
            inputs, batch_size=batch_size, tta=tta and modality == "image", verbose=bool(verbose)
        )
        report = report_for(
            classifier.task, files.label_array(), outputs, classifier.class_names,
            classifier.thresholds,
        )  # fmt: skip
        with staged_folder(out_dir, "evaluation", overwrite) as out:
            write_evaluation(
                out, report, inputs, files.bad_files, modality=modality,
                model=str(classifier.path), tta=tta,
            )  # fmt: skip
    return report
