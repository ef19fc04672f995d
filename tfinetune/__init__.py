"""tfinetune: transfer learning for Keras 3 and TensorFlow.

Example:
>>> import tfinetune
>>> model = tfinetune.build_classifier("convnet_tiny", num_classes=3, weights=None,
...                                    image_size=32)
>>> model.input_shape
(None, 32, 32, 3)
"""

from tfinetune.augment import build_augmentation
from tfinetune.backbones import CATALOGUE, BackboneSpec, build_backbone, get_spec
from tfinetune.data import (
    BadFile,
    ImageData,
    LabelledFiles,
    files_datasets,
    find_bad_files,
    image_folder_datasets,
    make_dataset,
    scan_image_folder,
    split_files,
)
from tfinetune.evaluate import (
    ClassificationReport,
    classification_report,
    evaluate_classifier,
    predict_dataset,
    top_losses,
)
from tfinetune.export import ExportCheckError, export_saved_model
from tfinetune.freezing import freeze, freeze_to, layer_groups, trainable_summary, unfreeze
from tfinetune.hub import HubLayer
from tfinetune.inference import ExportedClassifier
from tfinetune.lr_finder import LRFinderResult, lr_find
from tfinetune.models import build_classifier
from tfinetune.multilabel import MultiLabelReport, multilabel_report
from tfinetune.normalization import PixelNormalization
from tfinetune.records import convert_folder, tfds_datasets, tfrecord_datasets
from tfinetune.runs import evaluate_run, lr_find_run, train_run, write_evaluation
from tfinetune.schedules import one_cycle, warmup_cosine
from tfinetune.sources import array_datasets, files_from_rows, list_datasets, read_csv_files
from tfinetune.splits import class_weights
from tfinetune.training import FineTuneHistory, Stage, fine_tune

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE",
    "BackboneSpec",
    "BadFile",
    "ClassificationReport",
    "ExportCheckError",
    "ExportedClassifier",
    "FineTuneHistory",
    "HubLayer",
    "ImageData",
    "LRFinderResult",
    "LabelledFiles",
    "MultiLabelReport",
    "PixelNormalization",
    "Stage",
    "array_datasets",
    "build_augmentation",
    "build_backbone",
    "build_classifier",
    "class_weights",
    "classification_report",
    "convert_folder",
    "evaluate_classifier",
    "evaluate_run",
    "export_saved_model",
    "files_datasets",
    "files_from_rows",
    "find_bad_files",
    "fine_tune",
    "freeze",
    "freeze_to",
    "get_spec",
    "image_folder_datasets",
    "layer_groups",
    "list_datasets",
    "lr_find",
    "lr_find_run",
    "make_dataset",
    "multilabel_report",
    "one_cycle",
    "predict_dataset",
    "read_csv_files",
    "scan_image_folder",
    "split_files",
    "tfds_datasets",
    "tfrecord_datasets",
    "top_losses",
    "train_run",
    "trainable_summary",
    "unfreeze",
    "warmup_cosine",
    "write_evaluation",
]
