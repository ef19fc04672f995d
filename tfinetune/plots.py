"""Figures for people: training curves across stages and the confusion matrix (headless)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from tfinetune.evaluate import ClassificationReport
from tfinetune.training import FineTuneHistory

# Figures are made with `matplotlib.figure.Figure` rather than pyplot: they render straight to
# files with no GUI backend and leave the backend of a user's notebook alone.


def plot_history(history: FineTuneHistory, path: str | os.PathLike) -> None:
    """Plot loss and accuracy per epoch for every stage, with the stage boundaries marked.

    Args:
        history: what `fine_tune` returned.
        path: the PNG file to write.

    Example:
    >>> h = FineTuneHistory({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}, [("head", 0, 2)])
    >>> import tempfile
    >>> plot_history(h, tempfile.mkdtemp() + "/curves.png")
    """
    metrics = [m for m in ("loss", "accuracy") if m in history.history]
    fig = Figure(figsize=(5.5 * max(len(metrics), 1), 4))
    axes = np.atleast_1d(fig.subplots(1, max(len(metrics), 1)))
    epochs = np.arange(1, history.epochs + 1)
    for ax, metric in zip(axes, metrics, strict=False):
        ax.plot(epochs, history.history[metric], "o-", label=f"train {metric}")
        if f"val_{metric}" in history.history:
            ax.plot(epochs, history.history[f"val_{metric}"], "s-", label=f"validation {metric}")
        for name, start, end in history.stages:
            if start > 0:
                ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
            ax.text(
                (start + end + 1) / 2,
                1.01,
                name,
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=9,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion_matrix(report: ClassificationReport, path: str | os.PathLike) -> None:
    """Plot the confusion matrix with counts, rows normalised for the colours.

    Args:
        report: a classification report.
        path: the PNG file to write.

    Example:
    >>> from tfinetune.evaluate import classification_report
    >>> import tempfile
    >>> report = classification_report([0, 1], [0, 0], ["a", "b"])
    >>> plot_confusion_matrix(report, tempfile.mkdtemp() + "/cm.png")
    """
    matrix = report.confusion_matrix
    n = len(report.class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = 2.5 + 0.55 * n
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(n), report.class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), report.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report.accuracy:.1%}")
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
