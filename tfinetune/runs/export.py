"""`tfinetune export` and `tfinetune verify`: a run's model as a served or phone artifact.

Every export is verified before it appears: the artifact is loaded in a fresh process and
compared with the run's Keras model on real images (see `tfinetune.serving.verify`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.data.images import decode_and_resize
from tfinetune.data.labelled import labelled_files
from tfinetune.data.shards import is_record_source
from tfinetune.runs.sources import load_run_model, record_sample
from tfinetune.serving.export import export_version
from tfinetune.serving.tflite import CALIBRATION_IMAGES, export_tflite
from tfinetune.serving.verify import Verification, verify_artifact

FORMATS = ("saved_model", "tflite")


def _calibration_images(folder: str, class_names: list[str], contract: dict) -> list[np.ndarray]:
    """Images for int8 calibration: the training data's files, decoded as training does."""
    files = labelled_files(folder, class_names, contract)
    order = np.random.default_rng(0).permutation(len(files.paths))[:CALIBRATION_IMAGES]
    size, mode = tuple(contract["image_size"]), contract.get("resize", "stretch")
    return [decode_and_resize(tf.io.read_file(files.paths[i]), size, mode).numpy() for i in order]


def export_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "saved_model",
    version: int | None = None,
    quantize: str = "float32",
    top_k: int = 5,
    data: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> tuple[Path, Verification]:
    """Export a run's model, verified on real images before it is moved into place.

    Args:
        run: a `tfinetune train` run folder (or its `model.keras`).
        out: for `saved_model`, the model base folder (`BASE/NAME`; the version goes in a
            sub-folder); for `tflite`, the folder for `model.tflite` and its labels.
        format: "saved_model" or "tflite".
        version: the SavedModel version; the next free one by default.
        quantize: for TFLite: "float32", "float16", "dynamic" or "int8".
        top_k: how many classes the SavedModel's `top_k_*` outputs hold.
        data: a labelled folder (or CSV) to verify on; defaults to the run's validation data (or
            its training folder); for a shards or TFDS run, up to 64 of its validation records.
        overwrite: replace an existing version (or TFLite folder) that tfinetune wrote.

    Returns:
        The artifact's folder and its verification.

    Example:
    >>> path, check = export_run("runs/flowers", "models/flowers")  # doctest: +SKIP
    >>> path.name, check.passed  # doctest: +SKIP
    ('1', True)
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}. Use one of {', '.join(FORMATS)}.")
    model, class_names, contract, model_file = load_run_model(run)
    options = {"format": format, "version": version, "quantize": quantize, "top_k": top_k,
               "overwrite": overwrite}  # fmt: skip
    if contract.get("modality", "image") != "image":
        raise ValueError(
            f"{str(run)!r} is a {contract['modality']} run: `tfinetune export` (verified in a "
            "fresh process, TFLite) is for image models so far. Its saved_model/1 is a checked "
            "SavedModel for TF Serving: copy it into your model base folder as a version."
        )
    data = data or contract.get("validation_data") or contract.get("training_data")
    with tempfile.TemporaryDirectory() as scratch:
        if data and is_record_source(data):  # shards or TFDS: some of its records as files
            data = record_sample(str(data), contract, Path(scratch) / "sample")
        return _export(model, model_file, contract, class_names, out, data, options)


def _export(model, model_file: Path, contract: dict, class_names, out, data, options: dict):
    """Export and verify on `data` (a labelled folder or CSV); see `export_run`."""
    if not data or not Path(data).exists():
        raise FileNotFoundError(
            f"No labelled images to verify the export on (got {data!r}). Pass --data DIR (or a "
            "CSV file)."
        )
    labelled_files(data, class_names, contract)  # unknown classes fail before exporting
    checks: list[Verification] = []

    def check(folder: Path) -> None:
        checks.append(verify_artifact(folder, data, model))

    facts = {k: v for k, v in contract.items() if k not in ("check_max_abs_diff", "top_k")}
    facts["keras_model"] = str(model_file.resolve())
    if options["format"] == "saved_model":
        path = export_version(
            model, out, class_names, version=options["version"], overwrite=options["overwrite"],
            resize=contract.get("resize", "stretch"), top_k=options["top_k"], check=check,
            thresholds=facts.pop("thresholds", None),
            metadata={k: v for k, v in facts.items() if k != "task"},  # the export writes it
        )  # fmt: skip
    else:
        representative = None
        if options["quantize"] == "int8":
            source = contract.get("training_data") or data
            source = data if is_record_source(source) else source  # records: the sample
            representative = _calibration_images(source, class_names, contract)
        path = export_tflite(
            model, out, class_names, quantize=options["quantize"], representative=representative,
            contract=facts, overwrite=options["overwrite"], check=check,
        )  # fmt: skip
    checks[0].artifact = str(path)  # it was checked under its temporary name
    return path, checks[0]
