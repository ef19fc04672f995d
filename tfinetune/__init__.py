"""tfinetune: transfer learning for Keras 3 and TensorFlow.

The public surface, by step of the flow: data -> models -> training -> evaluation ->
serving, plus the runs the command line drives. Names are imported when first used, so
`import tfinetune` (and `tfinetune --help`) does not import TensorFlow.

Example:
>>> import tfinetune
>>> model = tfinetune.build_classifier("convnet_tiny", num_classes=3, weights=None,
...                                    image_size=32)
>>> model.input_shape
(None, 32, 32, 3)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
    "tfinetune.models.classifier": ("build_classifier",),
    # === training ===
    "tfinetune.training.freezing": (
        "freeze",
        "freeze_to",
        "layer_groups",
        "trainable_summary",
        "unfreeze",
    ),
    "tfinetune.training.schedules": ("one_cycle", "warmup_cosine"),
    "tfinetune.training.fine_tuning": ("FineTuneHistory", "Stage", "fine_tune"),
    "tfinetune.training.lr_finder": ("LRFinderResult", "lr_find"),
    # === evaluation ===
    "tfinetune.evaluation.report": (
        "ClassificationReport",
        "classification_report",
        "top_losses",
    ),
    "tfinetune.evaluation.multilabel": ("MultiLabelReport", "multilabel_report"),
    "tfinetune.evaluation.predict": ("evaluate_classifier", "predict_dataset"),
    "tfinetune.evaluation.outputs": ("write_evaluation",),
    # === serving ===
    "tfinetune.serving.export": ("ExportCheckError", "export_saved_model"),
    "tfinetune.serving.inference": ("ExportedClassifier",),
    # === whole runs (what the command line drives) ===
    "tfinetune.cli.runs": ("evaluate_run", "lr_find_run", "train_run"),
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


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from tfinetune.cli.runs import evaluate_run, lr_find_run, train_run
    from tfinetune.data.augment import build_augmentation
    from tfinetune.data.datasets import (
        ImageData,
        array_datasets,
        files_datasets,
        image_folder_datasets,
    )
    from tfinetune.data.files import BadFile, LabelledFiles, find_bad_files, split_files
    from tfinetune.data.folders import scan_image_folder
    from tfinetune.data.pipeline import PipelineOptions
    from tfinetune.data.records import convert_folder, tfrecord_datasets
    from tfinetune.data.splits import class_weights
    from tfinetune.data.tables import files_from_rows, read_csv_files
    from tfinetune.data.tfds import tfds_datasets
    from tfinetune.evaluation.multilabel import MultiLabelReport, multilabel_report
    from tfinetune.evaluation.outputs import write_evaluation
    from tfinetune.evaluation.predict import evaluate_classifier, predict_dataset
    from tfinetune.evaluation.report import (
        ClassificationReport,
        classification_report,
        top_losses,
    )
    from tfinetune.models.backbones import build_backbone, get_spec
    from tfinetune.models.catalogue import CATALOGUE
    from tfinetune.models.classifier import build_classifier
    from tfinetune.models.hub import HubLayer
    from tfinetune.models.normalization import PixelNormalization
    from tfinetune.models.specs import BackboneSpec
    from tfinetune.serving.export import ExportCheckError, export_saved_model
    from tfinetune.serving.inference import ExportedClassifier
    from tfinetune.training.fine_tuning import FineTuneHistory, Stage, fine_tune
    from tfinetune.training.freezing import (
        freeze,
        freeze_to,
        layer_groups,
        trainable_summary,
        unfreeze,
    )
    from tfinetune.training.lr_finder import LRFinderResult, lr_find
    from tfinetune.training.schedules import one_cycle, warmup_cosine
