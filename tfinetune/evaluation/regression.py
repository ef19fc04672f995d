"""Metrics and a figure for a model that predicts a number: MAE, RMSE, R², predicted vs true."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure


@dataclass
class RegressionReport:
    """How close predicted numbers are to the true ones, in the target's units.

    Args:
        target_name: what the number is (the CSV column).
        targets: the true values, `[examples]`.
        predictions: the predicted values, `[examples]`.
    """

    target_name: str
    targets: np.ndarray
    predictions: np.ndarray

    @property
    def mae(self) -> float:
        """Mean absolute error."""
        return float(np.mean(np.abs(self.predictions - self.targets)))

    @property
    def rmse(self) -> float:
        """Root mean squared error."""
        return float(np.sqrt(np.mean((self.predictions - self.targets) ** 2)))

    @property
    def r2(self) -> float | None:
        """The coefficient of determination (None when every target is the same)."""
        spread = float(np.sum((self.targets - self.targets.mean()) ** 2))
        if spread == 0:
            return None
        return 1.0 - float(np.sum((self.targets - self.predictions) ** 2)) / spread

    def to_dict(self) -> dict:
        """A JSON-ready form, as written to `metrics.json`."""
        return {
            "task": "regression",
            "target": self.target_name,
            "num_examples": len(self.targets),
            "mae": self.mae,
            "rmse": self.rmse,
            "r2": self.r2,
            "target_mean": float(self.targets.mean()),
            "target_std": float(self.targets.std()),
        }

    def to_markdown(self) -> str:
        """A short Markdown summary, as written to `summary.md`."""
        r2 = "n/a" if self.r2 is None else f"{self.r2:.4f}"
        return (
            f"# Evaluation (regression of {self.target_name})\n\n"
            f"- {len(self.targets)} images; targets {self.targets.mean():.4g} "
            f"± {self.targets.std():.4g}\n"
            f"- MAE: **{self.mae:.4g}**\n- RMSE: {self.rmse:.4g}\n- R²: {r2}\n"
        )

    def __str__(self) -> str:
        return self.to_markdown()


def regression_report(
    targets: Sequence[float] | np.ndarray,
    predictions: Sequence[float] | np.ndarray,
    target_name: str = "value",
) -> RegressionReport:
    """Build a regression report from true and predicted values.

    Args:
        targets: the true values.
        predictions: the predicted values (`[examples]` or `[examples, 1]`).
        target_name: what the number is.

    Example:
    >>> r = regression_report([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    >>> round(r.mae, 3), round(r.r2, 3)
    (0.333, 0.5)
    """
    targets = np.asarray(targets, dtype=float).reshape(-1)
    predictions = np.asarray(predictions, dtype=float)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if targets.size == 0:
        raise ValueError("There are no examples to evaluate: the dataset is empty.")
    if predictions.shape != targets.shape:
        raise ValueError(
            f"Expected one prediction per target ({targets.shape}); received {predictions.shape}."
        )
    return RegressionReport(str(target_name), targets, predictions)


def plot_regression(report: RegressionReport, path: str | os.PathLike) -> Figure:
    """Predicted against true values, with the line where they are equal.

    Args:
        report: the report.
        path: the PNG file to write.

    Example:
    >>> import tempfile
    >>> report = regression_report([1.0, 2.0], [1.5, 2.0])
    >>> fig = plot_regression(report, tempfile.mkdtemp() + "/p.png")
    """
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(report.targets, report.predictions, s=12, alpha=0.7)
    low = float(min(report.targets.min(), report.predictions.min()))
    high = float(max(report.targets.max(), report.predictions.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = true")
    ax.set_xlabel(f"true {report.target_name}")
    ax.set_ylabel(f"predicted {report.target_name}")
    ax.set_title(
        f"MAE {report.mae:.3g}, R² {report.r2 if report.r2 is None else round(report.r2, 3)}"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)
    return fig
