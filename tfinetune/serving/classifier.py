"""What every loaded artifact offers (`Classifier`): class names, input size, predictions for
files. `tfinetune.serving.inference` and `tfinetune.serving.tflite` load the artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.bars import progress_bar
from tfinetune.data.images import decode_and_resize


def first_line(err: BaseException) -> str:
    """The first line of an error's message, for one-line errors about a damaged file."""
    return (str(getattr(err, "message", err)).strip().splitlines() or [""])[0]


class Classifier:
    """What every loaded artifact offers: class names, input size, probabilities for files.

    Attributes:
        path: the file or folder loaded.
        class_names: the classes, in output order (regression: the target's name).
        image_size: `(height, width)` images are resized to.
        resize: "stretch", "crop" or "pad".
        task: "single_label", "multi_label" or "regression".
        thresholds: multi-label: each class's threshold.
        mirror: the model averages each image with its mirror itself (`mirror=True`), so
            `tta` has nothing to add.
    """

    path: Path
    class_names: list[str]
    image_size: tuple[int, int]
    resize: str = "stretch"
    task: str = "single_label"
    thresholds: list[float] | None = None
    contract: dict | None = None
    modality: str = "image"
    mirror: bool = False

    def _read_contract(self, contract: dict) -> None:
        self.contract = contract
        self.resize = contract.get("resize", "stretch")
        self.task = contract.get("task", self.task)
        self.thresholds = contract.get("thresholds")
        self.modality = contract.get("modality", self.modality)
        self.mirror = bool(contract.get("mirror", False))

    @property
    def output_key(self) -> str:
        """The serving output that holds the model's own output."""
        return "values" if self.task == "regression" else "probabilities"

    def describe(self, outputs: np.ndarray, top_k: int = 1) -> dict:
        """One image's outputs as a JSON-ready answer: the label, the labels, or the number.

        Args:
            outputs: the model's outputs for one image.
            top_k: for one label per image, also list the `top_k` likeliest classes (with
                their probabilities) under "top", when more than 1.
        """
        if self.task == "regression":
            return {self.class_names[0]: float(outputs[0])}
        if self.task == "multi_label":
            cut = self.thresholds or [0.5] * len(self.class_names)
            chosen = [c for c, p, t in zip(self.class_names, outputs, cut, strict=True) if p >= t]
            scores = {c: round(float(p), 6) for c, p in zip(self.class_names, outputs, strict=True)}
            return {"labels": chosen, "probabilities": scores}
        order = np.argsort(-np.asarray(outputs), kind="stable")
        answer = {"label": self.class_names[order[0]], "probability": float(outputs[order[0]])}
        if top_k > 1:
            answer["top"] = [{"label": self.class_names[i], "probability": float(outputs[i])}
                             for i in order[:top_k]]  # fmt: skip
        return answer

    def predict_pixels(self, pixels: np.ndarray | tf.Tensor, tta: bool = False) -> np.ndarray:
        """Class probabilities for `uint8` images at `image_size`; `tta` adds mirrors (unless
        the model mirrors itself)."""
        pixels = tf.convert_to_tensor(pixels, dtype=tf.uint8)
        probs = self._predict_pixels(pixels)
        if tta and not self.mirror:
            probs = (probs + self._predict_pixels(tf.image.flip_left_right(pixels))) / 2
        return probs

    def _predict_pixels(self, pixels: tf.Tensor) -> np.ndarray:
        raise NotImplementedError

    def _predict_signals(self, inputs: list) -> np.ndarray:
        """Outputs for texts, or for sound files' bytes (text and audio models)."""
        raise NotImplementedError

    def _predict_batch(self, paths: Sequence[str], tta: bool) -> np.ndarray:
        if self.modality == "text":
            return self._predict_signals(list(paths))
        if self.modality == "audio":
            return self._predict_signals([Path(p).read_bytes() for p in paths])
        size, mode = self.image_size, self.resize
        pixels = tf.stack([decode_and_resize(tf.io.read_file(str(p)), size, mode) for p in paths])
        return self.predict_pixels(pixels, tta=tta)

    def predict_files(
        self,
        paths: Sequence[str],
        batch_size: int = 32,
        tta: bool = False,
        verbose: int = 0,
    ) -> np.ndarray:
        """Class probabilities for image or sound files, read as stored on disk (for a text
        model: for texts).

        Args:
            paths: image or sound files (check them first with `tfinetune.find_bad_files`),
                or a text model's texts.
            batch_size: images per call.
            tta: average each image's prediction with its mirror's.
            verbose: show a progress bar.
        """
        progress = progress_bar(len(paths), "input", "predicting", verbose)
        chunks = []
        for start in range(0, len(paths), batch_size):
            batch = list(paths[start : start + batch_size])
            chunks.append(np.asarray(self._predict_batch(batch, tta), dtype="float32"))
            if progress:
                progress.add(len(batch))
        if not chunks:
            return np.zeros((0, len(self.class_names)), dtype="float32")
        return np.concatenate(chunks)
