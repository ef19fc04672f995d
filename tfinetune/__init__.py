"""tfinetune: transfer learning for Keras 3 and TensorFlow.

The public surface, by step of the flow: data -> models -> training -> evaluation ->
serving, plus the runs the command line drives. Names are imported when first used, so
`import tfinetune` (and `tfinetune --help`) does not import TensorFlow. Once Keras is
imported (before or after tfinetune), tfinetune's layers, schedules and losses are
registered with it, so `keras.saving.load_model` reads every model tfinetune saves.

Example:
>>> import tfinetune
>>> model = tfinetune.build_classifier("convnet_tiny", num_classes=3, weights=None,
...                                    image_size=32)
>>> model.input_shape
(None, 32, 32, 3)
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Any

from tfinetune.logs import OnFirstImport, quiet_next_tensorflow_import

__version__ = "0.1.0"

# module -> the public names it defines.
_PUBLIC: dict[str, tuple[str, ...]] = {
    # === data: files, folders, tables, arrays, records -> tf.data ===
    "tfinetune.data.files": ("BadFile", "LabelledFiles", "find_bad_files", "split_files"),
    "tfinetune.data.folders": ("scan_image_folder",),
    "tfinetune.data.tables": ("files_from_rows", "read_csv_files"),
    "tfinetune.data.splits": ("class_weights",),
    "tfinetune.data.augment": ("build_augmentation",),
    "tfinetune.data.pipeline": ("PipelineOptions",),
    "tfinetune.data.datasets": (
        "ImageData",
        "array_datasets",
        "files_datasets",
        "image_folder_datasets",
    ),
    "tfinetune.data.records": ("convert_folder", "tfrecord_datasets"),
    "tfinetune.data.tfds": ("tfds_datasets",),
    # === models: backbone + head ===
    "tfinetune.models.specs": ("BackboneSpec",),
    "tfinetune.models.catalogue": ("CATALOGUE",),
    "tfinetune.models.backbones": ("build_backbone", "get_spec"),
    "tfinetune.models.hub": ("HubLayer",),
    "tfinetune.models.normalization": ("PixelNormalization",),
    "tfinetune.models.options": ("HeadOptions",),
    "tfinetune.models.heads": ("TargetScaling", "apply_temperature", "build_head", "task_of"),
    "tfinetune.models.classifier": ("build_classifier",),
    "tfinetune.models.saving": ("load_model",),
    # === training ===
    "tfinetune.training.freezing": (
        "freeze",
        "freeze_to",
        "layer_groups",
        "trainable_summary",
        "unfreeze",
    ),
    "tfinetune.training.schedules": ("one_cycle", "warmup_cosine"),
    "tfinetune.training.recipe": ("RECIPE", "RECIPE_LABEL_SMOOTHING", "Stage"),
    "tfinetune.training.options": ("PerformanceConfig", "TrainingConfig"),
    "tfinetune.training.stages": ("FineTuneHistory", "default_stages"),
    "tfinetune.training.performance": ("Performance", "precision_scope", "resolve_performance"),
    "tfinetune.training.distribution": ("resolve_strategy",),
    "tfinetune.training.fine_tuning": ("fine_tune",),
    "tfinetune.training.lr_finder": ("LRFinderResult", "lr_find"),
    "tfinetune.training.distillation": ("Distiller", "distillation_loss"),
    # === evaluation ===
    "tfinetune.evaluation.report": (
        "ClassificationReport",
        "classification_report",
        "top_losses",
    ),
    "tfinetune.evaluation.multilabel": ("MultiLabelReport", "multilabel_report"),
    "tfinetune.evaluation.regression": ("RegressionReport", "regression_report"),
    "tfinetune.evaluation.predict": ("evaluate_classifier", "predict_dataset"),
    "tfinetune.evaluation.calibration": ("fit_temperature", "scale_probabilities"),
    "tfinetune.evaluation.outputs": ("write_evaluation",),
    # === cleaning: duplicates, leaks, label errors, outliers ===
    "tfinetune.cleaning.find": ("DataIssues", "find_data_issues"),
    # === serving ===
    "tfinetune.serving.export": ("ExportCheckError", "export_saved_model", "export_version"),
    "tfinetune.serving.inference": ("ExportedClassifier", "load_classifier"),
    "tfinetune.serving.tflite": ("TFLiteClassifier", "export_tflite"),
    "tfinetune.serving.verify": ("VerificationError", "verify_artifact"),
    # === whole runs (what the command line drives) ===
    "tfinetune.runs.experiment": ("Experiment", "load_config"),
    "tfinetune.runs.overrides": ("apply_flags",),
    "tfinetune.runs.train": ("train_run",),
    "tfinetune.runs.evaluate": ("evaluate_run",),
    "tfinetune.runs.validation": ("calibrate",),
    "tfinetune.runs.lr_find": ("lr_find_run",),
    "tfinetune.runs.export": ("export_run",),
}
_MODULE_OF = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tfinetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def use_backend(name: str | None) -> None:
    """Start Keras on the backend `name` ("tensorflow" or "jax"; None: as `KERAS_BACKEND` says).

    Keras reads `KERAS_BACKEND` once, when first imported: call this before that.

    Args:
        name: the backend, or None to leave the choice to the environment.

    Example:
    >>> use_backend(None)
    """
    if not name:
        return
    keras = sys.modules.get("keras")
    if keras is not None and keras.config.backend() != name:
        raise ValueError(
            f"Keras already runs on {keras.config.backend()} in this process, so it cannot "
            f"switch to {name}: set KERAS_BACKEND={name} before starting Python instead."
        )
    os.environ["KERAS_BACKEND"] = name


# === Keras deserialization ===
# The modules whose classes a saved tfinetune model can hold (layers of every head, mirror
# and hub backbone; the schedules and loss a compiled model holds); each registers its
# classes with `keras.saving.register_keras_serializable` when imported.
KERAS_OBJECT_MODULES = (
    "tfinetune.models.normalization",
    "tfinetune.models.heads",
    "tfinetune.models.mirror",
    "tfinetune.models.hub",
    "tfinetune.models.hub_groups",
    "tfinetune.training.schedules",
    "tfinetune.training.losses",
)
# Of those, the ones that wrap TensorFlow SavedModels (and import TensorFlow).
TENSORFLOW_ONLY = ("tfinetune.models.hub", "tfinetune.models.hub_groups")


def register_keras_objects() -> None:
    """Register tfinetune's Keras classes, so `keras.saving.load_model` reads its models.

    `import tfinetune` does this as soon as Keras is imported; call it yourself only after
    `keras.saving.get_custom_objects().clear()` or the like.

    Example:
    >>> import keras
    >>> register_keras_objects()
    >>> "tfinetune>PixelNormalization" in keras.saving.get_custom_objects()
    True
    """
    import keras

    for module in KERAS_OBJECT_MODULES:
        if module in TENSORFLOW_ONLY and keras.config.backend() != "tensorflow":
            continue  # a TF SavedModel runs only under TensorFlow; JAX need not import it
        importlib.import_module(module)


def _exec_and_register(exec_module, module) -> None:
    """Import Keras, then register tfinetune's classes with it."""
    exec_module(module)
    try:
        register_keras_objects()
    except ImportError as err:  # Keras itself imported fine: do not break it
        warnings.warn(f"tfinetune could not register its Keras layers: {err}", stacklevel=2)


if "keras" in sys.modules:
    register_keras_objects()
elif not any(getattr(f, "around", None) is _exec_and_register for f in sys.meta_path):
    sys.meta_path.insert(0, OnFirstImport("keras", _exec_and_register))

quiet_next_tensorflow_import()  # TensorFlow's C++ start-up log: TFINETUNE_VERBOSE=1 shows it
