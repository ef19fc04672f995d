"""Figures of an evaluation: confusion matrix, calibration (reliability) and image galleries.

Figures are made with `matplotlib.figure.Figure` rather than pyplot: they render straight to
files with no GUI backend and leave the backend of a user's notebook alone. Every function
writes one PNG and returns its figure (a notebook shows it when it is a cell's last value).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from tfinetune.data.images import decode_image
from tfinetune.evaluation.metrics import calibration_bins
from tfinetune.evaluation.report import ClassificationReport, top_losses

GALLERY_SIZE = 160  # the longer side of each image shown, in pixels


def _font_size(num_classes: int) -> float:
    return max(6.0, 11.0 - num_classes / 4)


def plot_confusion_matrix(report: ClassificationReport, path: str | os.PathLike) -> Figure:
    """Plot the confusion matrix twice: counts, and shares of each true class.

    Args:
        report: a single-label report.
        path: the PNG file to write.

    Example:
    >>> from tfinetune.evaluation.report import classification_report
    >>> import tempfile
    >>> report = classification_report([0, 1], [[0.9, 0.1], [0.6, 0.4]], ["a", "b"])
    >>> fig = plot_confusion_matrix(report, tempfile.mkdtemp() + "/cm.png")
    """
    matrix = report.confusion_matrix
    n = len(report.class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = 3.0 + 0.45 * n
    fig = Figure(figsize=(2 * side + 2, side + 0.6), layout="constrained")
    font = _font_size(n)
    for ax, values, title, fmt in zip(
        fig.subplots(1, 2),
        (matrix, share),
        ("counts", "share of each true class"),
        ("{:d}", "{:.2f}"),
        strict=True,
    ):
        scaled = values / max(values.max(), 1) if fmt == "{:d}" else values
        ax.imshow(scaled, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                colour = "white" if scaled[i, j] > 0.5 else "black"
                text = fmt.format(int(values[i, j]) if fmt == "{:d}" else values[i, j])
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=font)
        if n > 8:  # vertical labels stay apart however many classes there are
            ax.set_xticks(range(n), report.class_names, rotation=90, fontsize=font)
        else:
            ax.set_xticks(range(n), report.class_names, rotation=45, ha="right", fontsize=font)
        ax.set_yticks(range(n), report.class_names, fontsize=font)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.suptitle(f"accuracy {report.accuracy:.1%} on {len(report.labels)} examples")
    fig.savefig(path, dpi=100)
    return fig


def plot_reliability(report: ClassificationReport, path: str | os.PathLike) -> Figure:
    """A reliability diagram: accuracy against confidence per bin, with the bin counts.

    A calibrated report (`calibrated_report`) also shows its bins before the temperature.

    Args:
        report: a single-label report.
        path: the PNG file to write.

    Example:
    >>> from tfinetune.evaluation.report import classification_report
    >>> import tempfile
    >>> report = classification_report([0, 1], [[0.9, 0.1], [0.6, 0.4]], ["a", "b"])
    >>> fig = plot_reliability(report, tempfile.mkdtemp() + "/rel.png")
    """
    correct = (report.predictions == report.labels).astype(float)
    counts, accuracy, _ = calibration_bins(correct, report.probabilities.max(axis=1))
    edges = np.linspace(0, 1, len(counts) + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    fig = Figure(figsize=(5.5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = counts > 0
    top.bar(centres[filled], accuracy[filled], width=width, edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    title = f"expected calibration error {report.expected_calibration_error:.3f}"
    if report.uncalibrated is not None:  # where the same examples stood before the temperature
        counts_0, accuracy_0, _ = calibration_bins(correct, report.uncalibrated.max(axis=1))
        filled_0 = counts_0 > 0
        top.plot(centres[filled_0], accuracy_0[filled_0], "o:", color="tab:red",
                 label="before calibration")  # fmt: skip
        title = (f"calibration error {report.uncalibrated_calibration_error:.3f} before, "
                 f"{report.expected_calibration_error:.3f} after\n"
                 f"(temperature {report.temperature:.3g})")  # fmt: skip
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(title)
    bottom.bar(centres, counts, width=width, color="grey", edgecolor="black")
    bottom.set_xlabel("confidence (top predicted probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    fig.savefig(path, dpi=100)
    return fig


def thumbnail(path: str) -> np.ndarray:
    """An image at most `GALLERY_SIZE` pixels a side, in its own aspect ratio."""
    import tensorflow as tf

    image = decode_image(tf.io.read_file(str(path)))
    image = tf.image.resize(image, (GALLERY_SIZE, GALLERY_SIZE), preserve_aspect_ratio=True)
    return tf.cast(tf.round(image), tf.uint8).numpy()


def _gallery(items: Sequence[dict], title: str, path: str | os.PathLike) -> Figure:
    """A grid of images, each with a two-line caption coloured by right or wrong."""
    cols = min(4, max(len(items), 1))
    rows = max(1, -(-len(items) // cols))
    fig = Figure(figsize=(3.0 * cols, 3.3 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, item in zip(axes, items, strict=False):
        ax.imshow(thumbnail(item["path"]))
        right = item["true"] == item["predicted"]
        name = os.path.basename(item["path"])
        name = name if len(name) <= 28 else name[:12] + "..." + name[-13:]
        caption = f"{name}\n{item['caption']}"
        ax.set_title(caption, fontsize=8, color="green" if right else "red")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return fig


def plot_predictions(
    report: ClassificationReport,
    paths: Sequence[str],
    path: str | os.PathLike,
    n: int = 16,
    seed: int = 0,
) -> Figure:
    """A grid of sample predictions, half wrong and half right where there are enough.

    Args:
        report: a single-label report.
        paths: the image file of each example, in the report's order.
        path: the PNG file to write.
        n: how many images.
        seed: chooses the samples.

    Example:
    >>> plot_predictions(report, files.paths, "predictions.png")  # doctest: +SKIP
    """
    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero(report.predictions != report.labels)
    right = np.flatnonzero(report.predictions == report.labels)
    n_wrong = min(len(wrong), n // 2)
    n_right = min(len(right), n - n_wrong)
    chosen = list(rng.permutation(wrong)[:n_wrong]) + list(rng.permutation(right)[:n_right])
    items = []
    for i in chosen:
        true, pred = report.class_names[report.labels[i]], report.class_names[report.predictions[i]]
        p = report.probabilities[i].max()
        items.append(
            {
                "path": paths[i],
                "true": true,
                "predicted": pred,
                "caption": f"true: {true}\npredicted: {pred} ({p:.2f})",
            }
        )
    return _gallery(items, f"sample predictions ({n_wrong} wrong, {n_right} right)", path)


def plot_top_losses(
    report: ClassificationReport, paths: Sequence[str], path: str | os.PathLike, k: int = 9
) -> Figure:
    """The `k` images the model is most wrong (or least sure) about, with their loss.

    Args:
        report: a single-label report.
        paths: the image file of each example, in the report's order.
        path: the PNG file to write.
        k: how many images.

    Example:
    >>> plot_top_losses(report, files.paths, "top_losses.png")  # doctest: +SKIP
    """
    items = [
        {
            **t,
            "caption": f"{t['true']} → {t['predicted']}\nloss {t['loss']:.2f}, "
            f"p(true) {t['probability_of_true']:.2f}",
        }
        for t in top_losses(report, paths, k)
    ]
    return _gallery(items, f"top {len(items)} losses (true → predicted)", path)
