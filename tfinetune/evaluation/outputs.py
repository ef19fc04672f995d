"""Writing an evaluation to a folder: metrics, a Markdown summary and the figures."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from tfinetune.data.files import BadFile
from tfinetune.evaluation.multilabel import MultiLabelReport
from tfinetune.evaluation.plots import (
    plot_confusion_matrix,
    plot_predictions,
    plot_reliability,
    plot_top_losses,
)
from tfinetune.evaluation.regression import RegressionReport, plot_regression
from tfinetune.evaluation.report import ClassificationReport, top_losses


def write_evaluation(
    out_dir: str | os.PathLike,
    report: ClassificationReport | MultiLabelReport | RegressionReport,
    paths: Sequence[str] | None = None,
    bad_files: Sequence[BadFile] = (),
    modality: str = "image",
    **extra,
) -> list[Path]:
    """Write a report's files: metrics, a Markdown summary and the figures.

    `metrics.json` and `summary.md` always; for single-label reports also
    `confusion_matrix.png` and `reliability.png`, and, when the image files are known,
    `top_losses.json`, `top_losses.png` and `predictions.png`; for regression reports
    `predicted_vs_true.png`.

    Args:
        out_dir: the folder to write into (created if missing).
        report: the report.
        paths: the file of each example (for text: the text), in the report's order.
        bad_files: files skipped while reading the data, listed in `metrics.json`.
        modality: "image", "text" or "audio": for text and sound the top losses are a
            table (`top_losses.md`: the text, or the clip's file name) instead of galleries.
        **extra: more JSON-ready facts for `metrics.json`.

    Returns:
        The files written.

    Example:
    >>> import tempfile
    >>> from tfinetune.evaluation.report import classification_report
    >>> report = classification_report([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    >>> sorted(p.name for p in write_evaluation(tempfile.mkdtemp(), report))
    ['confusion_matrix.png', 'metrics.json', 'reliability.png', 'summary.md']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        **report.to_dict(),
        "skipped_files": [{"path": b.path, "reason": b.reason} for b in bad_files],
        **extra,
    }
    written = [out / "metrics.json", out / "summary.md"]
    written[0].write_text(json.dumps(metrics, indent=2))
    written[1].write_text(report.to_markdown())
    if isinstance(report, RegressionReport):
        plot_regression(report, out / "predicted_vs_true.png")
        written.append(out / "predicted_vs_true.png")
    if isinstance(report, ClassificationReport):
        plot_confusion_matrix(report, out / "confusion_matrix.png")
        plot_reliability(report, out / "reliability.png")
        written += [out / "confusion_matrix.png", out / "reliability.png"]
        if paths is not None and modality != "image":
            written += _top_losses_table(report, paths, modality, out)
        elif paths is not None:
            losses = top_losses(report, paths, k=9)
            (out / "top_losses.json").write_text(json.dumps(losses, indent=2))
            plot_top_losses(report, paths, out / "top_losses.png")
            plot_predictions(report, paths, out / "predictions.png")
            written += [out / "top_losses.json", out / "top_losses.png", out / "predictions.png"]
    return written


def _top_losses_table(report, examples: Sequence[str], modality: str, out: Path) -> list[Path]:
    """`top_losses.json` and `top_losses.md` for texts or sound files: what was misread."""
    key = "text" if modality == "text" else "path"
    losses = top_losses(report, examples, k=20, key=key)
    (out / "top_losses.json").write_text(json.dumps(losses, indent=2))
    rows = ["| loss | true | predicted (probability) | " + key + " |", "|---|---|---|---|"]
    for item in losses:
        shown = item[key] if key == "text" else Path(item[key]).name
        shown = shown.replace("|", "\\|").replace("\n", " ")
        rows.append(
            f"| {item['loss']:.3f} | {item['true']} | {item['predicted']} "
            f"({item['probability']:.2f}) | {shown} |"
        )
    (out / "top_losses.md").write_text("# Top losses\n\n" + "\n".join(rows) + "\n")
    return [out / "top_losses.json", out / "top_losses.md"]
