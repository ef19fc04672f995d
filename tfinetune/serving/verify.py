"""Verify an artifact against its Keras model on real images, loading it in a fresh process.

`verify_artifact` decodes every image of a labelled folder (or CSV file), runs the Keras model
on it here and the artifact in a new Python process (as a server or phone would load it), and
compares: agreement (the same top class; for multi-label models the same label set at the
stored thresholds; for regression a number within 1 % of the predictions' spread), the largest
output difference, and both scores: accuracy (exact-match accuracy for multi-label, R² for
regression).
Run as `python -m tfinetune.serving.verify ARTIFACT FILES.json OUT.npz` it is that process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfinetune.data.files import LabelledFiles
from tfinetune.data.images import decode_and_resize, decode_image
from tfinetune.data.labelled import labelled_files
from tfinetune.models.classifier import modality_of
from tfinetune.models.saving import load_keras_model
from tfinetune.serving.export import read_contract
from tfinetune.serving.inference import ExportedClassifier, find_saved_model, load_classifier
from tfinetune.serving.signatures import image_example

# What an artifact must meet: (least top-1 agreement, largest probability difference,
# largest accuracy drop in points). Quantized TFLite models are held to accuracy instead.
CRITERIA = {
    "saved_model": (1.0, 1e-4, None),
    "keras": (1.0, 1e-4, None),
    "float32": (0.99, 1e-3, None),
    "float16": (0.99, None, None),
    "dynamic": (None, None, 2.0),
    "int8": (None, None, 2.0),
}


# Per task: the agreement column's name, the score's name and its format.
_HEADERS = {
    "single_label": ("top-1 agreement", "accuracy", ".2%"),
    "multi_label": ("same label set", "exact set", ".2%"),
    "regression": ("within 1%", "R²", ".4f"),
}


class VerificationError(RuntimeError):
    """An artifact does not predict what its Keras model predicts."""


@dataclass
class Verification:
    """The outcome of `verify_artifact`, per route into the artifact (signature or file)."""

    artifact: str
    kind: str
    images: int
    agreement: dict[str, float]
    max_abs_diff: dict[str, float]
    accuracy: dict[str, float]
    keras_accuracy: float
    problems: list[str] = field(default_factory=list)
    task: str = "single_label"

    @property
    def passed(self) -> bool:
        """Whether every route met the criteria for the artifact's kind."""
        return not self.problems

    def to_dict(self) -> dict:
        """JSON-ready facts."""
        return {**asdict(self), "passed": self.passed}

    def __str__(self) -> str:
        agreement, score, form = _HEADERS[self.task]
        lines = [
            f"Verified {self.artifact} ({self.kind}) on {self.images} images in a fresh process:",
            f"  {'route':<16}{agreement:>16}{'max |diff|':>11}{score:>10}",
        ]
        for route, agreed in self.agreement.items():
            lines.append(
                f"  {route:<16}{agreed:>16.2%}{self.max_abs_diff[route]:>11.1e}"
                f"{self.accuracy[route]:>10{form}}"
            )
        lines.append(f"  {'keras model':<16}{'':>16}{'':>11}{self.keras_accuracy:>10{form}}")
        lines += [f"  FAILED: {p}" for p in self.problems] or ["  passed"]
        return "\n".join(lines)


def _routes(artifact: str, paths: list[str]) -> dict[str, np.ndarray]:
    """In the fresh process: the artifact's probabilities for `paths`, by every route."""
    classifier = load_classifier(artifact)
    if not isinstance(classifier, ExportedClassifier):
        return {classifier.path.suffix.lstrip("."): classifier.predict_files(paths)}
    encoded = [Path(p).read_bytes() for p in paths]
    images = classifier.signature("serve_images")
    examples = classifier.signature("serve_examples")
    full_size = [images(images=decode_image(tf.constant(e))[None]) for e in encoded]
    key = classifier.output_key
    serialized = tf.constant([image_example(e) for e in encoded])
    return {
        "serving_default": classifier.predict_bytes(encoded),
        "serve_images": np.concatenate([o[key].numpy() for o in full_size]),
        "serve_examples": examples(example_bytes=serialized)[key].numpy(),
    }


def _run_fresh_process(artifact: Path, paths: list[str]) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as scratch:
        listing, out = Path(scratch, "files.json"), Path(scratch, "out.npz")
        listing.write_text(json.dumps(paths))
        command = [sys.executable, "-m", "tfinetune.serving.verify", str(artifact), str(listing)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([*command, str(out)], capture_output=True, text=True, env=env)
        if done.returncode != 0 or not out.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise VerificationError(
                f"{str(artifact)!r} could not be run in a fresh process:\n{tail}"
            )
        with np.load(out) as saved:
            return {name: saved[name] for name in saved.files}


def find_reference_model(artifact: str | os.PathLike) -> Path:
    """The `model.keras` of the run an artifact came from (its contract, or a folder above).

    Args:
        artifact: an exported SavedModel or TFLite folder or file.

    Example:
    >>> find_reference_model("runs/flowers/saved_model/1")  # doctest: +SKIP
    PosixPath('runs/flowers/model.keras')
    """
    artifact = Path(artifact).resolve()
    classifier_folder = artifact.parent if artifact.is_file() else artifact
    for folder in (classifier_folder, *classifier_folder.parents[:3]):
        try:
            recorded = read_contract(folder)[1].get("keras_model")
        except FileNotFoundError:
            recorded = None
        for candidate in (recorded, folder / "model.keras"):
            if candidate and Path(candidate).is_file():
                return Path(candidate)
    raise FileNotFoundError(
        f"No Keras model found for {str(artifact)!r} to verify it against. Pass --reference "
        "MODEL.keras (the run's model.keras)."
    )


def _describe(artifact: Path) -> tuple[str, list[str], dict]:
    """The artifact's kind, class names and preprocessing, read without loading a SavedModel."""
    if artifact.suffix == ".keras":
        keras_model = load_classifier(artifact)
        contract = {"image_size": keras_model.image_size, "resize": keras_model.resize,
                    "task": keras_model.task, "thresholds": keras_model.thresholds}  # fmt: skip
        return "keras", keras_model.class_names, contract
    if artifact.suffix == ".tflite" or (artifact / "model.tflite").is_file():
        folder = artifact.parent if artifact.suffix == ".tflite" else artifact
        class_names, contract = read_contract(folder)
        return contract.get("quantize", "float32"), class_names, contract
    class_names, contract = read_contract(find_saved_model(artifact))
    return "saved_model", class_names, contract


def verify_artifact(
    artifact: str | os.PathLike,
    data_dir: str | os.PathLike,
    reference: keras.Model | str | os.PathLike | None = None,
    *,
    raise_on_failure: bool = True,
) -> Verification:
    """Check an artifact against its Keras model on every image of a labelled folder.

    Criteria: SavedModels agree with the Keras model on every image through every signature,
    probabilities within 1e-4; float32 and float16 TFLite agree on at least 99 % of images;
    dynamic-range and int8 TFLite lose at most 2 points of accuracy.

    Args:
        artifact: a SavedModel folder, a `.tflite` file or folder, or a `.keras` file.
        data_dir: a folder with one sub-folder per class (classes the artifact knows), or
            for any task a CSV file as the run was trained from.
        reference: the Keras model (or its `.keras` file); found from the artifact if None.
        raise_on_failure: raise `VerificationError` when a criterion is not met.

    Example:
    >>> print(verify_artifact("models/flowers/1", "flowers/val"))  # doctest: +SKIP
    Verified models/flowers/1 (saved_model) on 125 images in a fresh process: ...
    """
    artifact = Path(artifact)
    kind, class_names, contract = _describe(artifact)
    if contract.get("modality", "image") != "image":
        raise ValueError(
            f"{str(artifact)!r} is a {contract['modality']} model: verification in a fresh "
            "process is for image models so far. Its export was checked against the Keras "
            "model when it was written; `tfinetune evaluate` scores it on labelled data."
        )
    if not isinstance(reference, keras.Model):
        reference = load_keras_model(reference or find_reference_model(artifact))
    files = labelled_files(data_dir, class_names, contract)
    if not files.paths:
        raise ValueError(f"No images to verify on in {str(data_dir)!r}.")
    result = _verify(artifact, kind, contract, reference, files, fresh_process=True)
    if raise_on_failure and result.problems:
        raise VerificationError(f"Verification failed.\n{result}")
    return result


def _verify(
    artifact: Path,
    kind: str,
    contract: dict,
    reference: keras.Model,
    files: LabelledFiles,
    fresh_process: bool,
) -> Verification:
    """Compare every route into `artifact` with `reference` on `files`."""
    size, mode = tuple(contract["image_size"]), contract.get("resize", "stretch")
    pixels = [decode_and_resize(tf.io.read_file(p), size, mode) for p in files.paths]
    expected = np.asarray(reference.predict(tf.stack(pixels), verbose=0, batch_size=32))
    paths = list(files.paths)
    routes = _run_fresh_process(artifact, paths) if fresh_process else _routes(artifact, paths)
    task = contract.get("task", "single_label")
    decide = _decisions(task, contract.get("thresholds"))
    result = _compare(str(artifact), kind, routes, expected, files.label_array(), decide)
    result.task = task
    return result


def export_check(
    reference: keras.Model, files: LabelledFiles | None, limit: int = 64
) -> Callable[[Path], Verification] | None:
    """A `check` for `export_saved_model`: verify the staged SavedModel on real images.

    The check runs in this process, through every signature (`serving_default`,
    `serve_images` with the full-size decoded pixels, `serve_examples`), on the `limit`
    largest of `files` on disk (large photos are where decoding routes could part), and holds
    the export to `verify`'s criteria, so a run never ships what `tfinetune verify` rejects.

    Args:
        reference: the Keras model being exported.
        files: labelled image files (a run's validation files); None gives no check.
        limit: the most files to check on.

    Returns:
        The check, or None when there are no files or the model is not an image model.

    Example:
    >>> export_check(keras.Sequential([keras.Input((2,))]), None) is None
    True
    """
    if files is None or not len(files) or modality_of(reference) != "image":
        return None
    order = sorted(range(len(files)), key=lambda i: -os.path.getsize(files.paths[i]))
    sample = files.subset(sorted(order[:limit]))

    def check(staged: Path) -> Verification:
        _, contract = read_contract(staged)
        result = _verify(staged, "saved_model", contract, reference, sample, fresh_process=False)
        if result.problems:
            raise VerificationError(
                f"The SavedModel does not predict what the Keras model predicts on "
                f"{len(sample)} validation images; nothing was written.\n{result}"
            )
        return result

    return check


def _decisions(task: str, thresholds: list[float] | None):
    """`(agree(outputs, expected), score(outputs, labels))` for a task, per image / overall."""
    if task == "regression":

        def agree(out, expected):
            return np.abs(out - expected)[:, 0] <= 0.01 * (expected.std() or 1.0)

        def score(out, labels):
            spread = float(np.sum((labels - labels.mean()) ** 2)) or 1.0
            return 1.0 - float(np.sum((labels - out[:, 0]) ** 2)) / spread

        return agree, score
    if task == "multi_label":
        cut = np.asarray(thresholds or 0.5)

        def agree(out, expected):
            return ((out >= cut) == (expected >= cut)).all(axis=1)

        def score(out, labels):
            return float(((out >= cut) == (labels > 0)).all(axis=1).mean())

        return agree, score
    return (
        lambda out, expected: out.argmax(1) == expected.argmax(1),
        lambda out, labels: float((out.argmax(1) == labels).mean()),
    )


def _compare(
    artifact: str,
    kind: str,
    routes: dict[str, np.ndarray],
    expected: np.ndarray,
    labels: np.ndarray,
    decide=None,
) -> Verification:
    """Measure each route against the Keras model's outputs and hold it to CRITERIA."""
    least_agreement, tolerance, max_drop = CRITERIA[kind]
    agree, score = decide or _decisions("single_label", None)
    keras_accuracy = score(expected, labels)
    result = Verification(artifact, kind, len(labels), {}, {}, {}, keras_accuracy)
    for route, probs in routes.items():
        result.agreement[route] = float(agree(probs, expected).mean())
        result.max_abs_diff[route] = float(np.abs(probs - expected).max())
        result.accuracy[route] = score(probs, labels)
        if least_agreement is not None and result.agreement[route] < least_agreement:
            result.problems.append(
                f"{route}: top-1 agreement {result.agreement[route]:.2%} < {least_agreement:.0%}"
            )
        if tolerance is not None and not result.max_abs_diff[route] <= tolerance:
            gap = result.max_abs_diff[route]
            result.problems.append(f"{route}: outputs differ by {gap:.1e} > {tolerance:.0e}")
        drop = 100 * (keras_accuracy - result.accuracy[route])
        if max_drop is not None and drop > max_drop:
            result.problems.append(f"{route}: accuracy {drop:.1f} points below the Keras model's")
    return result


def _main(argv: list[str]) -> None:
    artifact, listing, out = argv
    routes = _routes(artifact, json.loads(Path(listing).read_text()))
    np.savez(out, **routes)


if __name__ == "__main__":
    _main(sys.argv[1:])
