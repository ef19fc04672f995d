"""`tfinetune demo`: the whole workflow offline, on data it makes, with an honest baseline.

Pretrained ImageNet weights cannot be assumed offline, so the demo makes its own transfer
problem. A small ConvNet is pretrained on a *source* task (six shapes, many labels). A
classifier for a *different target* task (four other shapes, twenty labels per class) is
then fine-tuned from that backbone, and the same architecture is trained from scratch on the
same target images for the same number of epochs. Both are scored on the same held-out
target images. With `weights=FILE` (ImageNet weights for the backbone), pretraining is
skipped and those weights are fine-tuned instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from tfinetune.atomic import MARKER, check_output_folder, written_kind
from tfinetune.data.datasets import image_folder_datasets
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.evaluation.predict import evaluate_classifier
from tfinetune.models.classifier import build_classifier, find_backbone
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.overrides import apply_flags
from tfinetune.runs.train import train_run
from tfinetune.serving.inference import ExportedClassifier
from tfinetune.training.fine_tuning import fine_tune
from tfinetune.training.freezing import layer_groups
from tfinetune.training.options import TrainingConfig
from tfinetune.training.recipe import Stage

SOURCE_SHAPES = ("circle", "triangle", "square", "cross", "ring", "clover")
TARGET_SHAPES = ("hexagon", "star", "ellipse", "cog")


def prepare_demo_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create the demo folder, replacing the data of an earlier demo run in it.

    A folder that an earlier demo wrote (its marker file says so) is the demo's own to
    replace; files tfinetune did not write are never removed.

    Args:
        out_dir: the demo folder.
        overwrite: passed on to `check_output_folder`.

    Example:
    >>> import tempfile
    >>> prepare_demo_dir(tempfile.mkdtemp() + "/demo").name
    'demo'
    """
    ours = written_kind(out_dir) == "demo"
    out = check_output_folder(out_dir, overwrite or ours, "demo")
    if (out / "data").exists():  # images of an earlier run, perhaps of other classes
        shutil.rmtree(out / "data")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"written_by": "tfinetune", "kind": "demo"}) + "\n")
    return out


def _train_from_scratch(backbone, weights_none_size, train_dir, val_dir, epochs, seed, verbose):
    """The baseline: the same architecture from random weights, everything trainable."""
    keras.utils.set_random_seed(seed)
    data = image_folder_datasets(
        train_dir, val_dir, image_size=weights_none_size, batch_size=16, seed=seed
    )
    model = build_classifier(
        backbone, len(data.class_names), weights=None, image_size=weights_none_size
    )
    _train_every_layer(model, data, epochs, 1e-3, "from scratch", verbose)
    return evaluate_classifier(model, data.val, data.class_names)


def _target_folders(data: Path, labels_per_class: int, seed: int) -> tuple[Path, Path]:
    """The target task's training folder (few labels) and validation folder (60 a class)."""
    train = write_shapes_folder(
        data / "target_train", TARGET_SHAPES, labels_per_class, seed=seed + 1, image_format="jpeg"
    )
    val = write_shapes_folder(
        data / "target_val", TARGET_SHAPES, 60, seed=seed + 2, image_format="jpeg"
    )
    return train, val


def _pretrain(out: Path, backbone: str, size: int, seed: int, verbose) -> tuple[Path, float]:
    """Pretrain the backbone on the source task; return its weights file and accuracy."""
    source = write_shapes_folder(out / "data" / "source", SOURCE_SHAPES, 600, seed=seed)
    keras.utils.set_random_seed(seed)
    data = image_folder_datasets(source, image_size=size, batch_size=32, seed=seed)
    model = build_classifier(backbone, len(SOURCE_SHAPES), weights=None, image_size=size)
    _train_every_layer(model, data, 12, 2e-3, "pretrain", verbose)
    accuracy = evaluate_classifier(model, data.val, data.class_names).accuracy
    weights = out / "pretrained_backbone.weights.h5"
    find_backbone(model).save_weights(weights)
    return weights, accuracy


def _train_every_layer(model, data, epochs: int, learning_rate: float, name: str, verbose):
    """Train all layer groups, BatchNorm included, as training from random weights needs."""
    everything = len(layer_groups(model))
    stages = [Stage(epochs, everything, learning_rate, name)]
    fine_tune(
        model,
        data.train,
        data.val,
        stages=stages,
        training=TrainingConfig(train_bn=True),
        verbose=verbose,
    )


def run_demo(
    out_dir: str | os.PathLike = "tfinetune-demo",
    *,
    weights: str | os.PathLike | None = None,
    labels_per_class: int = 20,
    seed: int = 0,
    overwrite: bool = False,
    verbose: int = 1,
) -> dict:
    """Run the offline demo and return its numbers (also written to `summary.json`).

    Args:
        out_dir: the folder for data, the pretrained backbone and the run.
        weights: ImageNet weights for MobileNetV2 to fine-tune instead of pretraining.
        labels_per_class: target training images per class.
        seed: the random seed of data and training.
        overwrite: allow a non-empty `out_dir`.
        verbose: 0 silent, 1 progress and a summary.

    Example:
    >>> summary = run_demo("tfinetune-demo", verbose=0)  # doctest: +SKIP
    >>> summary["fine_tuned_accuracy"] > summary["scratch_accuracy"]     # doctest: +SKIP
    True
    """
    started = time.perf_counter()
    out = prepare_demo_dir(out_dir, overwrite)
    tf.config.experimental.enable_op_determinism()  # the same numbers on every run
    say = print if verbose else (lambda *a, **k: None)
    fit_verbose = 2 if verbose else 0

    # === Data it makes itself ===
    target_train, target_val = _target_folders(out / "data", labels_per_class, seed)

    # === Pretraining on the source task ===
    if weights is None:
        backbone, size, epochs, freeze_epochs = "convnet_tiny", 64, 12, 4
        say(f"[1/4] Pretraining convnet_tiny on the source task {list(SOURCE_SHAPES)}")
        weights, source_acc = _pretrain(out, backbone, size, seed, fit_verbose)
        say(f"      source-task validation accuracy: {source_acc:.1%}")
    else:
        backbone, size, epochs, freeze_epochs = "mobilenet_v2", 96, 6, 4
        source_acc = None
        say(f"[1/4] Using the given weights {str(weights)!r} for mobilenet_v2 (no pretraining)")

    # === Fine-tuning on the target task ===
    say(
        f"[2/4] Fine-tuning on the target task {list(TARGET_SHAPES)} with {labels_per_class} "
        "labels per class"
    )
    # The demo's own recipe for small synthetic shapes: the top 2 blocks at a constant rate,
    # one view per image (not the photo recipe's every group, cosine and mirror averaging).
    experiment = apply_flags(Experiment(), {
        "data": target_train, "val_data": target_val, "backbone": backbone,
        "weights": str(weights), "image_size": size, "epochs": epochs,
        "freeze_epochs": freeze_epochs, "train_groups": 3, "learning_rate": 3e-3,
        "schedule": "constant", "batch_size": 16, "seed": seed,
    }).with_values({"evaluation.tta": False})  # fmt: skip
    run = train_run(experiment, out / "run", overwrite=True, verbose=fit_verbose)

    # === The baseline: same architecture and budget, from scratch ===
    say("[3/4] Training the same architecture from scratch on the same images and epochs")
    scratch = _train_from_scratch(
        backbone, size, target_train, target_val, epochs + freeze_epochs, seed, fit_verbose
    )

    # === Serving ===
    say("[4/4] Predicting one image through the exported SavedModel")
    summary = {
        "source_accuracy": source_acc,
        "fine_tuned_accuracy": run.report.accuracy,
        "scratch_accuracy": scratch.accuracy,
        "labels_per_class": labels_per_class,
        **_serve_one_image(run.out_dir, target_val),
        "run_dir": str(run.out_dir),
        "seconds": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say(_closing_text(summary, out))
    return summary


def _serve_one_image(run_dir: Path, val_dir: Path) -> dict:
    """Predict the first validation image of the first class through the SavedModel."""
    served = ExportedClassifier(run_dir)
    example = sorted((val_dir / TARGET_SHAPES[0]).iterdir())[0]
    probs = served.predict_files([str(example)])[0]
    return {
        "example_image": str(example),
        "example_true_label": TARGET_SHAPES[0],
        "example_prediction": served.class_names[int(probs.argmax())],
        "example_probability": float(probs.max()),
    }


def _closing_text(summary: dict, out: Path) -> str:
    """What the demo prints at the end: both accuracies, a served prediction, the files."""
    return (
        f"\nTarget-task validation accuracy ({len(TARGET_SHAPES)} classes, "
        f"{summary['labels_per_class']} training images per class):\n"
        f"  fine-tuned from the pretrained backbone  {summary['fine_tuned_accuracy']:.1%}\n"
        f"  same model trained from scratch          {summary['scratch_accuracy']:.1%}\n"
        f"\nSavedModel says {Path(summary['example_image']).name} (a {TARGET_SHAPES[0]}) is "
        f"'{summary['example_prediction']}' (p={summary['example_probability']:.3f}).\n"
        f"\nEverything is in {out}/:\n"
        f"  run/metrics.json, run/training_curves.png, run/confusion_matrix.png\n"
        f"  run/saved_model/1/ (TF Serving), run/model.keras, summary.json, data/\n"
        f"Done in {summary['seconds']:.0f} s."
    )
