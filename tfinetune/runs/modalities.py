"""Runs on text and sound: what the data holds, the backbone and recipe that suit it, and its
datasets.

A run's data says what it is: a CSV with a text column (and no path column) is text, a folder
whose class sub-folders hold WAV files is sound, anything else images. Text and sound runs
use a TF Hub backbone of that kind (by default Google's `nnlm-en-dim50` and `yamnet`) and,
unless the experiment sets its own stages, the recipe chosen for that kind (`RECIPES`).
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

from tfinetune.data.audio import audio_dataset, is_audio_folder, scan_audio_folder
from tfinetune.data.datasets import ImageData
from tfinetune.data.labelled import is_csv
from tfinetune.data.shards import is_record_source
from tfinetune.data.splits import split_parts
from tfinetune.data.text import read_text_csv, text_datasets
from tfinetune.models.backbones import BackboneSpec, get_spec
from tfinetune.models.specs import HUB_MODELS
from tfinetune.runs.experiment import Experiment, ModelConfig
from tfinetune.training.recipe import ALL_GROUPS, Stage

MODALITIES = ("image", "text", "audio")
DEFAULT_BACKBONES = {kind: f"hub:{HUB_MODELS[kind][0][0]}" for kind in ("text", "audio")}
# Chosen on held-out parts of the training data (see benchmarks/README.md, "Text and sound");
RECIPES = {
    "text": {
        "stages": [
            Stage(5, 1, 1e-3, "head"),
            Stage(10, ALL_GROUPS, 1e-3, "fine-tune", schedule="warmup_cosine"),
        ],
        "hidden_units": [256],
    },
    "audio": {
        "stages": [
            Stage(2, 1, 3e-3, "head"),
            Stage(6, ALL_GROUPS, 3e-4, "fine-tune", lr_mult=3.0, schedule="warmup_cosine"),
        ],
        "hidden_units": [],
    },
}


def data_modality(train: str, text_column: str = "text", path_column: str = "path") -> str:
    """What a run's training data holds: "image", "text" or "audio".

    Args:
        train: the training folder or CSV file.
        text_column: a text CSV's text column.
        path_column: an image CSV's path column.

    Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text("text,label\\nhello,a\\n")
    >>> data_modality(str(path))
    'text'
    """
    if is_record_source(train):
        return "image"
    if is_csv(train):
        if not Path(train).is_file():
            return "image"  # reading it reports the missing file
        with open(train, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f), [])
        return "text" if text_column in header and path_column not in header else "image"
    return "audio" if Path(train).is_dir() and is_audio_folder(train) else "image"


def backbone_for(
    experiment: Experiment, modality: str
) -> tuple[Experiment, BackboneSpec, str | None]:
    """The experiment with the backbone for the data, its spec, and a note when it was chosen
    for the data's kind.

    The image default (`mobilenet_v2`) with text or sound data becomes that kind's default;
    any other backbone must take what the data holds.

    Args:
        experiment: the run's experiment.
        modality: what the data holds (see `data_modality`).
    """
    backbone, note = experiment.model.backbone, None
    if modality != "image" and backbone == ModelConfig().backbone:
        backbone = DEFAULT_BACKBONES[modality]
        note = f"{modality} data: backbone {backbone} (choose another with --backbone)"
        experiment = replace(experiment, model=replace(experiment.model, backbone=backbone))
    spec = get_spec(backbone)
    if spec.modality != modality:
        raise ValueError(
            f"The backbone {backbone!r} takes {spec.modality} input but the training data "
            f"{experiment.data.train!r} holds {modality}. Pass a {modality} backbone "
            f"(--backbone hub:<handle or folder>; default {DEFAULT_BACKBONES.get(modality)})."
        )
    return experiment, spec, note


def with_recipe(experiment: Experiment, modality: str) -> tuple[Experiment, str | None]:
    """The experiment with its kind's recipe unless it sets its own stages, and a note saying
    so when the stages are the recipe's.

    Args:
        experiment: the run's experiment.
        modality: what the data holds.
    """
    if modality == "image":
        return experiment, None
    recipe = RECIPES[modality]
    if experiment.stages == Experiment().stages:
        model = experiment.model
        if not model.hidden_units:
            model = replace(model, hidden_units=list(recipe["hidden_units"]))
        stages = [replace(s) for s in recipe["stages"]]
        experiment = replace(experiment, stages=stages, model=model)
    if [s.epochs for s in experiment.stages] != [s.epochs for s in recipe["stages"]]:
        return experiment, None
    stages = ", ".join(
        f"{s.name} {s.epochs} epochs at {s.learning_rate:g}" for s in experiment.stages
    )
    return (
        experiment,
        f"{modality} recipe: {stages}; head {experiment.model.hidden_units or 'linear'}",
    )


def load_signal_data(experiment: Experiment, modality: str, spec: BackboneSpec, batch: int,
                     verbose: int = 1) -> ImageData:  # fmt: skip
    """The datasets of a text CSV (and its validation CSV) or a folder of sound files.

    Args:
        experiment: the run's experiment.
        modality: "text" or "audio".
        spec: the backbone (an audio backbone's sample rate and clip length).
        batch: the global batch size.
        verbose: show progress while checking files.
    """
    d = experiment.data
    val = d.val or None
    if modality == "text":
        options = {"text_column": d.text_column, "label_column": d.label_column,
                   "label_delim": d.label_delim or None}  # fmt: skip
        train = read_text_csv(d.train, task=d.task or None, **options)
        held = (
            read_text_csv(val, class_names=train.class_names, task=train.task, **options)
            if val
            else None
        )
        return text_datasets(train, held, val_split=d.val_split, batch_size=batch,
                             seed=experiment.seed)  # fmt: skip
    rate = spec.sample_rate
    samples = round(d.clip_seconds * rate) if d.clip_seconds else spec.default_size
    train = scan_audio_folder(d.train, verbose=verbose)
    held = scan_audio_folder(val, train.class_names) if val else None
    parts = split_parts(train, held, val_split=d.val_split, seed=experiment.seed)
    files = {name: part for name, part in parts.items() if part}
    augment = d.augment if isinstance(d.augment, str) else "light"
    sets = {name: audio_dataset(f, rate=rate, samples=samples, batch_size=batch,
                                training=name == "train", augment=augment, seed=experiment.seed)
            for name, f in files.items()}  # fmt: skip
    return ImageData(
        train=sets["train"], val=sets.get("val"), class_names=train.class_names,
        train_files=files["train"], val_files=files.get("val"),
        bad_files=[*train.bad_files, *(held.bad_files if held else [])],
        ignored=list(train.ignored), train_labels=files["train"].label_array(),
    )  # fmt: skip


def print_text_predictions(classifier, arguments: list[str]) -> int:
    """Print one JSON line per text: each argument is a text, `-` reads one per stdin line.

    Args:
        classifier: a loaded text model (`tfinetune.serving.inference.load_classifier`).
        arguments: the texts, or `-`.
    """
    texts = [t for a in arguments for t in (sys.stdin.read().splitlines() if a == "-" else [a])]
    for text, probs in zip(texts, classifier.predict_files(texts), strict=True):
        print(json.dumps({"text": text, **classifier.describe(probs)}))
    return 0
