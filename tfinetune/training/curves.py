"""Figures of training: loss and accuracy per epoch across stages, and the finder's sweep.

Figures are made with `matplotlib.figure.Figure` rather than pyplot: they render straight to
files with no GUI backend and leave the backend of a user's notebook alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from tfinetune.training.stages import FineTuneHistory


def plot_history(history: FineTuneHistory, path: str | os.PathLike) -> Figure:
    """Plot loss and accuracy per epoch for every stage, with the stage boundaries marked.

    Args:
        history: what `fine_tune` returned.
        path: the PNG file to write.

    Example:
    >>> from tfinetune.training.stages import FineTuneHistory
    >>> h = FineTuneHistory({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}, [("head", 0, 2)])
    >>> import tempfile
    >>> fig = plot_history(h, tempfile.mkdtemp() + "/curves.png")
    """
    metrics = [m for m in ("loss", "accuracy", "auc", "mae") if m in history.history]
    fig = Figure(figsize=(5.5 * max(len(metrics), 1), 4), layout="constrained")
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, not 1.25
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=100)
    return fig


def plot_lr_finder(
    learning_rates: Sequence[float],
    losses: Sequence[float],
    path: str | os.PathLike,
    suggestions: Mapping[str, float] | None = None,
) -> Figure:
    """Plot a learning-rate finder's loss against the learning rate (log scale).

    Args:
        learning_rates: the rates tried, increasing.
        losses: the (smoothed) loss at each rate.
        path: the PNG file to write.
        suggestions: named rates to mark, such as `{"valley": 3e-4}`.

    Example:
    >>> import tempfile
    >>> lrs = np.logspace(-6, 0, 50)
    >>> fig = plot_lr_finder(lrs, (np.log10(lrs) + 3) ** 2, tempfile.mkdtemp() + "/lr.png",
    ...                      {"valley": 1e-3})
    """
    lrs, values = np.asarray(learning_rates), np.asarray(losses)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(lrs, values, "-")
    for (name, rate), marker in zip((suggestions or {}).items(), "ovs^D", strict=False):
        at = np.interp(np.log10(rate), np.log10(lrs), values)
        ax.plot([rate], [at], marker, markersize=9, label=f"{name}: {rate:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.grid(alpha=0.3, which="both")
    if suggestions:
        ax.legend()
    fig.savefig(path, dpi=100)
    return fig
