"""`train_run`: training data in, a complete run folder out.

A run folder holds its record (`config.toml`, `environment.json`, `manifest.csv`,
`README.md`; see `tfinetune.runs.folder`), `labels.txt`, `metrics.json`, `history.json`,
`training_curves.png`, the evaluation's figures, `model.keras` and `saved_model/1/`, the
SavedModel for TF Serving (and, for multi-label runs, `thresholds.json`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import tensorflow as tf

from tfinetune.atomic import (
    check_output_folder,
    folder_lock,
    resumable_folder,
    write_text,
)
from tfinetune.data.datasets import ImageData
from tfinetune.data.files import BadFile
from tfinetune.data.labelled import is_csv
from tfinetune.evaluation.multilabel import MultiLabelReport
from tfinetune.evaluation.regression import RegressionReport
from tfinetune.evaluation.report import ClassificationReport
from tfinetune.models.backbones import BackboneSpec
from tfinetune.models.heads import set_model_info
from tfinetune.runs.build import data_and_model, resolved_backbone
from tfinetune.runs.card import relative, write_model_card
from tfinetune.runs.checks import check_values
from tfinetune.runs.experiment import Experiment, load_config, resolve_paths
from tfinetune.runs.folder import (
    CHECKPOINTS,
    check_same_experiment,
    check_same_files,
    write_manifest,
    write_record,
)
from tfinetune.runs.skipped import SkippedInTraining
from tfinetune.runs.sources import load_teacher
from tfinetune.runs.validation import evaluate_validation
from tfinetune.runs.workers import trained_alone, worker_folder
from tfinetune.serving.export import export_version
from tfinetune.serving.inference import SAVED_MODEL_DIR
from tfinetune.serving.verify import export_check
from tfinetune.training.curves import plot_history
from tfinetune.training.distillation import Distiller
from tfinetune.training.distribution import describe_strategy, replicas, resolve_strategy
from tfinetune.training.fine_tuning import fine_tune
from tfinetune.training.performance import resolve_determinism, resolve_performance
from tfinetune.training.processes import (
    ProcessGroup,
    describe_group,
    join_process_group,
    process_share,
)
from tfinetune.training.stages import FineTuneHistory, Stage


@dataclass
class RunResult:
    """What `train_run` made."""

    out_dir: Path
    model: keras.Model
    class_names: list[str]
    history: FineTuneHistory
    report: ClassificationReport | MultiLabelReport | RegressionReport | None
    bad_files: list[BadFile]
    seconds: float


def train_run(
    experiment: Experiment | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    allow_changes: bool = False,
    verbose: int = 1,
) -> RunResult:
    """Run an experiment: train on a folder or a CSV file and leave a complete run folder.

    Fine-tunes in the experiment's stages (by default the head, then the top 5 groups),
    evaluates on the validation data, and writes metrics, plots, the Keras model, a checked
    SavedModel, and the run's record (`config.toml`, `environment.json`, `manifest.csv`,
    `README.md`). The run is built in `NAME.partial` beside `out_dir`, with a checkpoint
    after every epoch (`checkpoints/`), and renamed to `out_dir` when complete; after an
    interruption or a kill, `resume=True` continues it from its last completed epoch. The
    task follows the data: a folder of class sub-folders gives one label
    per image; a CSV gives one label, several (`data.label_delim`, or `data.task =
    "multi_label"`), or a number (`"regression"`). A multi-label run chooses each class's
    threshold on the validation data and stores the thresholds with the export. With
    `distill.teacher`, the model is distilled from a trained run (see `tfinetune.Distiller`).

    Args:
        experiment: an `Experiment` (see `tfinetune.runs.experiment`) or an experiment file.
        out_dir: the run folder to write (new or empty unless `overwrite`).
        overwrite: replace an earlier run in `out_dir`, as a whole, when this one is done
            (and start over an unfinished one).
        resume: continue the unfinished run of `out_dir` (`NAME.partial`).
        allow_changes: resume although the experiment or the data's files changed.
        verbose: 0 silent, 1 progress bars and a summary.

    Example:
    >>> from tfinetune.runs.overrides import apply_flags
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> data = write_shapes_folder(root + "/data", ["ring", "cross"], 6, size=32)
    >>> e = apply_flags(Experiment(), {"data": data, "backbone": "convnet_tiny",
    ...     "weights": "none", "image_size": 32, "epochs": 1, "freeze_epochs": 1})
    >>> r = train_run(e, root + "/run", verbose=0)
    >>> (r.out_dir / "saved_model" / "1" / "saved_model.pb").is_file()
    True
    """
    started = time.perf_counter()
    if not isinstance(experiment, Experiment):
        experiment = load_config(experiment)
    experiment = resolve_paths(experiment, Path.cwd())
    check_values(experiment)  # before anything is read: an error names its key
    p = experiment.performance
    # A multi-worker strategy must exist before other TensorFlow work; a bad name fails here.
    strategy = _strategy(p.strategy)
    resolve_performance(p.precision, p.jit_compile)
    resolve_determinism(p.deterministic_ops, device="cpu")  # a bad value fails here
    experiment, spec, weights = resolved_backbone(experiment, bool(verbose))
    with worker_folder(out_dir, strategy, resume) as (folder, chief):  # others: scratch
        result = _run(experiment, spec, weights, strategy, folder, chief, overwrite, resume,
                      allow_changes or not chief, verbose, started)  # fmt: skip
    return replace(result, out_dir=Path(out_dir))  # a worker's scratch folder is gone


def _run(experiment, spec, weights, strategy, out_dir, chief, overwrite, resume, allow_changes,
         verbose, started) -> RunResult:  # fmt: skip
    """`train_run` in the folder this process writes (see `tfinetune.runs.workers`)."""
    if not resume:
        check_output_folder(out_dir, overwrite, "run")
    keras.utils.set_random_seed(experiment.seed)
    if resolve_determinism(experiment.performance.deterministic_ops):
        tf.config.experimental.enable_op_determinism()
    with folder_lock(out_dir), resumable_folder(out_dir, "run", overwrite, resume) as out:
        if resume and not allow_changes:
            check_same_experiment(out, experiment)
        write_record(out, experiment)
        data, model = data_and_model(experiment, spec, weights, verbose, strategy, out / "scan")
        if resume and not allow_changes:
            check_same_files(out, data)
        write_manifest(out, data)
        write_text(out / "labels.txt", "\n".join(data.class_names) + "\n")
        history = _train(experiment, data, model, verbose, out, resume, strategy)
        model = trained_alone(model, strategy)  # on the chief, evaluated and exported alone
        if not chief:  # the chief evaluates and exports the same weights
            seconds = time.perf_counter() - started
            return RunResult(Path(out_dir), model, data.class_names, history, None, [], seconds)
        write_text(out / "history.json", json.dumps(history.to_dict(), indent=2))
        plot_history(history, out / "training_curves.png")
        report = None
        if data.val is not None:
            seconds = time.perf_counter() - started
            tta = experiment.evaluation.tta
            report = evaluate_validation(model, data, out, seconds, tta, bool(verbose))
            if verbose:
                print(report)
        _save_and_export(experiment, spec, data, model, report, out)
        seconds = time.perf_counter() - started
        facts = {"headline": headline(report), "seconds": seconds,
                 "performance": history.performance, "modality": spec.modality}  # fmt: skip
        write_model_card(out, Path(out_dir).resolve(), experiment, data, facts)
    return RunResult(
        Path(out_dir), model, data.class_names, history, report, data.bad_files, seconds
    )


def _train(
    experiment: Experiment, data: ImageData, model: keras.Model, verbose: int,
    out: Path, resume: bool, strategy,
) -> FineTuneHistory:  # fmt: skip
    """Fine-tune the model (or distil it) in the experiment's stages, with checkpoints;
    with several replicas, every learning rate times their number (the batch grew so).
    After each epoch that is a whole pass, training files that failed to decode are named
    in the manifest."""
    t, distill, p = experiment.training, experiment.distill, experiment.performance
    trained = model
    if distill.teacher:
        with strategy.scope():
            teacher = load_teacher(distill.teacher, data.class_names)
            trained = Distiller(model, teacher, distill.temperature, distill.alpha)
    scale = replicas(strategy)
    stages = [replace(s, learning_rate=s.learning_rate * scale) if scale > 1 else s
              for s in stages_of(experiment)]  # fmt: skip
    training = replace(
        experiment.training,
        label_smoothing=t.label_smoothing if data.task == "single_label" else 0.0,
        class_weight=data.class_weights() if experiment.data.balance_classes else None,
    )
    train, val = data.train, data.val
    if isinstance(strategy, ProcessGroup):  # each process trains on its share of a batch
        train, val = process_share(train, strategy), process_share(val, strategy)
    history = fine_tune(
        trained, train, val, stages=stages, training=training,
        performance=replace(
            p, strategy=strategy if keras.config.backend() == "tensorflow" else "auto"
        ),
        checkpoint_dir=out / CHECKPOINTS, resume=resume,
        callbacks=[SkippedInTraining(data, out, verbose, t.steps_per_epoch is None)],
        # One line per epoch in logs; live progress bars in a terminal.
        verbose=verbose if verbose != 1 or sys.stdout.isatty() else 2,
    )  # fmt: skip
    history.performance.update(describe_strategy(strategy, experiment.data.batch_size))
    if isinstance(strategy, ProcessGroup):
        history.performance.update(describe_group(strategy))
    history.performance["deterministic_ops"] = resolve_determinism(p.deterministic_ops)
    return history


def _strategy(name: str):
    """The run's `tf.distribute` strategy; on JAX, `multi_worker` joins a `ProcessGroup`
    (Keras's distribution API), and otherwise TensorFlow's default strategy stands in (a
    scope that changes nothing), since `tf.distribute` cannot place JAX's arrays."""
    if keras.config.backend() == "tensorflow":
        return resolve_strategy(name)
    if name == "multi_worker" and keras.config.backend() == "jax":
        return join_process_group()
    if name not in ("auto", "default"):
        raise ValueError(
            f"performance.strategy = {name!r} is TensorFlow's tf.distribute, and Keras runs "
            f"on {keras.config.backend()}: use strategy 'auto' (or 'multi_worker' on JAX, "
            f"with Keras's KERAS_DISTRIBUTION_* variables), or the TensorFlow backend."
        )
    return tf.distribute.get_strategy()


def stages_of(experiment: Experiment) -> list[Stage]:
    """The experiment's stages with epochs, as `fine_tune` takes them.

    Args:
        experiment: the experiment.
    """
    return [s for s in experiment.stages if s.epochs]


def _save_and_export(experiment, spec, data, model, report, out: Path) -> None:
    """`model.keras` and version 1 of the SavedModel for TF Serving (`tfinetune export` adds
    more), with a multi-label run's thresholds. The model carries its class names, resize
    mode, thresholds and CSV columns, so the `.keras` file alone can be evaluated and served."""
    d = experiment.data
    thresholds = getattr(report, "thresholds", None)  # a multi-label run's, chosen on val
    csv_columns = {"path_column": d.path_column, "label_column": d.label_column,
                   "text_column": d.text_column,
                   "label_delim": d.label_delim or None} if is_csv(d.train) else None  # fmt: skip
    set_model_info(
        model, class_names=list(data.class_names), resize=d.resize,
        **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None else {}),
        **({"csv": csv_columns} if csv_columns else {}),
    )  # fmt: skip
    model.save(out / "model.keras")
    if not experiment.export.saved_model:
        return
    sources = {"training_data": d.train, "validation_data": d.val or None,
               "teacher": experiment.distill.teacher or None,
               "tfds_dir": d.tfds_dir if d.train.startswith("tfds:") else None}  # fmt: skip
    options = {"class_names": list(data.class_names), "resize": d.resize,
               "thresholds": None if thresholds is None else [float(t) for t in thresholds],
               "top_k": experiment.export.top_k,
               "metadata": {**_export_facts(spec, sources, csv_columns, out),
                            **_calibration_facts(report)}}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        val_files, failed = data.val_files, data.skipped_in_validation
        if val_files is not None and failed:  # checked on the images that decode
            val_files = val_files.subset([i for i in range(len(val_files)) if i not in failed])
        if val_files is None and "val" in data.records:  # check on real images all the same
            val_files = data.records["val"].sample(Path(scratch))  # those that decode
        if keras.config.backend() != "tensorflow":  # a SavedModel is TensorFlow's: export there
            export_in_tensorflow(out / "model.keras", out / SAVED_MODEL_DIR, options, val_files)
            return
        export_saved_version(model, out / SAVED_MODEL_DIR, options, val_files)


def export_saved_version(model: keras.Model, base: Path, options: dict, val_files) -> None:
    """Version 1 of the run's SavedModel, checked through every signature on `val_files`."""
    export_version(
        model, base, options["class_names"], version=1, resize=options["resize"],
        thresholds=options["thresholds"], top_k=options["top_k"], metadata=options["metadata"],
        check=export_check(model, val_files),  # every signature, on real photos
    )  # fmt: skip


# Run by `export_in_tensorflow` as `python -c`: argv is the .keras file, the base folder,
# and a JSON file of the options and the validation files.
_EXPORT_SCRIPT = """
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
from pathlib import Path
from tfinetune.data.files import LabelledFiles
from tfinetune.models.saving import load_model
from tfinetune.runs.train import export_saved_version
given = json.loads(Path(sys.argv[3]).read_text())
files = given["val_files"] and LabelledFiles(**given["val_files"])
export_saved_version(load_model(sys.argv[1]), Path(sys.argv[2]), given["options"], files)
"""


def export_in_tensorflow(model_file: Path, base: Path, options: dict, val_files) -> None:
    """Export a model trained on another Keras backend: its `.keras` file is backend-neutral,
    so a fresh process loads it on TensorFlow and exports and checks it there."""
    files = val_files and {"paths": list(val_files.paths), "labels": list(val_files.labels),
                           "class_names": list(val_files.class_names)}  # fmt: skip
    given = base.parent / "export_options.json"
    given.write_text(json.dumps({"options": options, "val_files": files}))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _EXPORT_SCRIPT, str(model_file), str(base), str(given)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        given.unlink(missing_ok=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(
            f"Exporting the SavedModel on TensorFlow (Keras trained on "
            f"{keras.config.backend()}) failed: {last}"
        )


def headline(report) -> str:
    """The one number of a validation report, for the last line of a run ("" without one).

    Args:
        report: a validation report, or None.
    """
    if report is None:
        return ""
    if hasattr(report, "accuracy"):
        return f"validation accuracy {report.accuracy:.1%}"
    if hasattr(report, "mae"):
        return f"validation MAE {report.mae:.4g}"
    return f"validation macro F1 {report.to_dict()['macro_avg']['f1']:.3f}"


def _export_facts(spec: BackboneSpec, sources: dict, csv_columns: dict | None, run: Path) -> dict:
    """What an export records of its run: backbone, data and teacher paths (relative to the
    run folder, so that the two can move together), CSV columns."""
    facts = {"backbone": spec.name, "normalization": spec.normalization}
    facts.update({k: relative(Path(v).resolve(), run) if v[:5] != "tfds:" else v
                  for k, v in sources.items() if v})  # fmt: skip
    if csv_columns:  # how to read the CSVs again, to evaluate and verify
        facts["csv"] = csv_columns
    return facts


def _calibration_facts(report) -> dict:
    """The temperature folded into the model's output layer, for `preprocessing.json`."""
    if getattr(report, "temperature", None) is None:
        return {}
    return {"calibration": {"temperature": report.temperature, "fitted_on": "validation data"}}
