"""Exports for TF Serving, each checked to predict what the Keras model predicts.

An export is written to a temporary folder beside its destination, loaded back and compared
with the Keras model, and only then moved into place: a failed export leaves nothing behind,
and `overwrite` replaces only an earlier tfinetune export, as a whole. `export_version`
writes TF Serving's layout, `BASE/NAME/<version>/`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.atomic import folder_lock, staged_folder
from tfinetune.data.audio import decode_clip, tone_wav
from tfinetune.data.images import RESIZE_MODES
from tfinetune.models.classifier import modality_of, sample_rate_of
from tfinetune.models.heads import task_of
from tfinetune.models.mirror import mirrors
from tfinetune.serving.signatures import (
    AUDIO_INPUT,
    BYTES_INPUT,
    BYTES_SIGNATURE,
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    IMAGES_INPUT,
    IMAGES_SIGNATURE,
    TEXT_INPUT,
    WAVEFORMS_INPUT,
    WAVEFORMS_SIGNATURE,
    image_example,
    serving_functions,
)

ASSETS_DIR = "assets.extra"  # TF Serving's folder for files that travel with a model
LABELS_FILE = "labels.txt"
CONTRACT_FILE = "preprocessing.json"
THRESHOLDS_FILE = "thresholds.json"  # a multi-label run's per-class thresholds


class ExportCheckError(RuntimeError):
    """The exported model does not predict what the Keras model predicts."""


def _check_inputs(model: keras.Model) -> tuple[dict[str, dict], np.ndarray]:
    """Check inputs for every signature of `model`, and what the Keras model predicts."""
    modality = modality_of(model)
    if modality == "text":
        sentences = ["A first check sentence.", "", "and ANOTHER one, with punctuation!"]
        expected = model.predict_on_batch(tf.constant(sentences))
        return {BYTES_SIGNATURE: {TEXT_INPUT: tf.constant(sentences)}}, np.asarray(expected)
    if modality == "audio":
        rate, samples = sample_rate_of(model), model.input_shape[1]
        clips = [  # 8 kHz mono 0.5 s; 44.1 kHz stereo 1.2 s (resampled, mixed down)
            tone_wav(440, seconds=0.5, rate=8000),
            tone_wav(700, seconds=1.2, rate=44100, channels=2),
        ]
        waves = tf.stack([decode_clip(c, rate, samples) for c in clips])
        expected = np.asarray(model.predict_on_batch(waves))
        return {
            BYTES_SIGNATURE: {AUDIO_INPUT: tf.constant(clips)},
            WAVEFORMS_SIGNATURE: {WAVEFORMS_INPUT: waves},
        }, expected
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, *model.input_shape[1:3], 3), dtype=np.uint8)
    encoded = [tf.io.encode_png(p).numpy() for p in pixels]
    expected = np.asarray(model.predict_on_batch(pixels.astype("float32")))
    return {
        BYTES_SIGNATURE: {BYTES_INPUT: tf.constant(encoded)},
        IMAGES_SIGNATURE: {IMAGES_INPUT: tf.constant(pixels)},
        EXAMPLES_SIGNATURE: {EXAMPLES_INPUT: tf.constant([image_example(e) for e in encoded])},
    }, expected


def _check_export(path: Path, model: keras.Model, tolerance: float) -> float:
    """Compare every signature with the Keras model on check inputs; return the largest gap."""
    inputs, expected = _check_inputs(model)
    key = "values" if task_of(model) == "regression" else "probabilities"
    loaded = tf.saved_model.load(str(path))
    served = [loaded.signatures[name](**args) for name, args in inputs.items()]
    gap = max(float(np.abs(out[key].numpy() - expected).max()) for out in served)
    if not gap <= tolerance:
        raise ExportCheckError(
            f"The exported model's {key} differ from the Keras model's by {gap:.2e} "
            f"(allowed: {tolerance:.0e}); nothing was written."
        )
    return gap


def input_contract(model: keras.Model, resize: str = "stretch") -> dict:
    """What an exported model's signatures take, for `preprocessing.json`.

    Args:
        model: a model made by `build_classifier`.
        resize: an image model's resize mode.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> input_contract(build_classifier("convnet_tiny", weights=None, image_size=32))["input"]
    'RGB pixels 0..255; the model normalises them itself'
    """
    modality = modality_of(model)
    if modality == "text":
        return {"modality": "text", "input": "raw text; the model tokenises it itself"}
    if modality == "audio":
        rate, samples = sample_rate_of(model), model.input_shape[1]
        return {
            "modality": "audio",
            "sample_rate": rate,
            "clip_samples": samples,
            "input": f"WAV bytes at any rate (mixed to mono, resampled to {rate} Hz, the "
            f"middle {samples} samples or padded at the end), or mono waveforms at {rate} Hz",
        }
    return {
        "modality": "image",
        "image_size": list(model.input_shape[1:3]),
        "resize": resize,
        "mirror": mirrors(model),
        "input": "RGB pixels 0..255; the model normalises them itself",
    }


def read_contract(folder: str | os.PathLike) -> tuple[list[str], dict]:
    """The class names and the preprocessing contract stored with an export.

    Args:
        folder: a SavedModel folder written by `export_saved_model` (the files are in its
            `assets.extra/`), or a TFLite folder (the files are beside `model.tflite`).

    Example:
    >>> read_contract("models/flowers/1")  # doctest: +SKIP
    (['daisy', ...], {'image_size': [224, 224], 'resize': 'stretch', ...})
    """
    assets = Path(folder) / ASSETS_DIR
    if not assets.is_dir():  # a TFLite folder keeps them beside the model
        assets = Path(folder)
    labels, contract = assets / LABELS_FILE, assets / CONTRACT_FILE
    if not labels.is_file() or not contract.is_file():
        raise FileNotFoundError(
            f"{str(assets)!r} lacks {LABELS_FILE} or {CONTRACT_FILE}: this model was not "
            "exported by tfinetune (or is incomplete). Export it again with `tfinetune export`."
        )
    return labels.read_text().splitlines(), json.loads(contract.read_text())


def write_contract(folder: Path, class_names: Sequence[str], contract: dict) -> None:
    """Write `labels.txt` and `preprocessing.json` into `folder` (made if missing)."""
    folder.mkdir(exist_ok=True)
    (folder / LABELS_FILE).write_text("".join(f"{c}\n" for c in class_names))
    (folder / CONTRACT_FILE).write_text(json.dumps(contract, indent=2) + "\n")


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    class_names: Sequence[str],
    *,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    metadata: dict | None = None,
    resize: str = "stretch",
    top_k: int = 5,
    thresholds: Sequence[float] | None = None,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Export a classifier as a SavedModel for TF Serving, with decoding inside the graph.

    Signatures (see `tfinetune.serving.signatures`):
      - `serving_default(image_bytes: string[batch])`: encoded JPEG, PNG, GIF or BMP files;
      - `serve_images(images: uint8[batch, height, width, 3])`: RGB images of any size;
      - `serve_examples(example_bytes: string[batch])`: serialized `tf.train.Example`s with
        the image bytes under `image/encoded`, as `tfinetune convert` writes them.
    Each returns `probabilities`, the top class's `class_id`, `label` and `score`, and the
    `top_k_*` ids, labels and scores; a multi-label model's return the label sets at
    `thresholds`, a regression model's the number (see `serving_functions`). In
    `assets.extra/`: `labels.txt` (one class per line) and `preprocessing.json` (the task,
    image size, resize mode, thresholds, normalisation, and `metadata`).

    Args:
        model: a classifier taking RGB pixels in 0..255.
        export_dir: the folder to create.
        class_names: the class names, in output order.
        overwrite: replace an earlier tfinetune export in `export_dir` (nothing else).
        tolerance: the largest allowed difference from the Keras model's probabilities.
        metadata: extra JSON-ready facts to store in `preprocessing.json`.
        resize: how images are resized: "stretch", "crop" or "pad", as the model was
            trained (see `tfinetune.data.images.resize_image`).
        top_k: how many classes the `top_k_*` outputs hold.
        thresholds: multi-label: each class's probability threshold (default 0.5).
        check: called with the written folder before it is moved into place; an exception
            from it abandons the export (see `tfinetune.serving.verify`).

    Returns:
        The export folder.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> import tempfile
    >>> path = export_saved_model(m, tempfile.mkdtemp() + "/sm", ["a", "b"])
    >>> sorted(p.name for p in path.iterdir())[:3]
    ['.tfinetune', 'assets', 'assets.extra']
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"Unknown resize mode {resize!r}. Use one of {', '.join(RESIZE_MODES)}.")
    export_dir = Path(export_dir)
    class_names = [str(c) for c in class_names]
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"The model predicts {model.output_shape[-1]} classes but {len(class_names)} class "
            f"names were given: {class_names}."
        )
    task = task_of(model)
    if thresholds is not None:
        thresholds = [float(t) for t in thresholds]
        if task != "multi_label" or len(thresholds) != len(class_names):
            raise ValueError(
                f"thresholds are one per class of a multi-label model; received {thresholds} "
                f"for a {task} model with {len(class_names)} outputs."
            )
    with staged_folder(export_dir, "export", overwrite) as staging:
        archive = keras.export.ExportArchive()
        archive.track(model)
        functions = serving_functions(model, class_names, resize, top_k, thresholds)
        for name, (function, spec) in functions.items():
            archive.add_endpoint(name, function, input_signature=[spec])
        archive.write_out(str(staging), verbose=False)
        gap = _check_export(staging, model, tolerance)
        contract = {
            "task": task,
            **input_contract(model, resize),
            "top_k": min(top_k, len(class_names)),
            "check_max_abs_diff": gap,
            **(
                {"thresholds": thresholds or [0.5] * len(class_names)}
                if task == "multi_label"
                else {}
            ),
            **(metadata or {}),
        }
        write_contract(staging / ASSETS_DIR, class_names, contract)
        if check is not None:
            check(staging)
    return export_dir


def versions_in(base: str | os.PathLike) -> list[int]:
    """The integer version folders in a TF Serving model base folder, in ascending order.

    Args:
        base: the model's base folder (`BASE/NAME`).

    Example:
    >>> versions_in("/no/such/folder")
    []
    """
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def export_version(
    model: keras.Model,
    base: str | os.PathLike,
    class_names: Sequence[str],
    *,
    version: int | None = None,
    overwrite: bool = False,
    **options,
) -> Path:
    """Export a classifier as `base/<version>/`, the layout TF Serving loads.

    TF Serving serves the highest integer version in `base`; the folder is written under a
    hidden temporary name (which TF Serving ignores) and renamed when complete. One export at
    a time writes `base` (a lock file beside it), so two never take the same version.

    Args:
        model: a classifier taking RGB pixels in 0..255.
        base: the model's base folder (`--model_base_path` for TF Serving).
        class_names: the class names, in output order.
        version: a positive integer; defaults to one more than the highest in `base`.
        overwrite: replace an existing version (only one tfinetune exported).
        **options: passed to `export_saved_model` (`resize`, `top_k`, `metadata`, `check`).

    Returns:
        The version folder.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> import tempfile
    >>> base = tempfile.mkdtemp() + "/shapes"
    >>> [export_version(m, base, ["a", "b"]).name for _ in range(2)]
    ['1', '2']
    """
    with folder_lock(base):  # two exports never take the same version
        if version is None:
            version = (versions_in(base) or [0])[-1] + 1
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(
                f"Version {version!r} is not a positive integer (TF Serving needs one)."
            )
        if (Path(base) / str(version)).exists() and not overwrite:
            raise FileExistsError(
                f"Version {version} already exists in {str(base)!r}. Pass another version, "
                "leave it out to take the next free one, or use overwrite=True "
                "to replace it."
            )
        return export_saved_model(
            model, Path(base) / str(version), class_names, overwrite=overwrite, **options
        )
