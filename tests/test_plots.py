import itertools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from tfinetune import classification_report, scan_image_folder, write_evaluation
from tfinetune.evaluation.plots import (
    plot_confusion_matrix,
    plot_reliability,
    plot_top_losses,
)
from tfinetune.training.curves import plot_history, plot_lr_finder
from tfinetune.training.stages import FineTuneHistory

NAMES_20 = [f"class_with_long_name_{i:02d}" for i in range(20)]


def _report(n_classes=20, n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 2.5 * np.eye(n_classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return classification_report(labels, probs, NAMES_20[:n_classes])


def _overlaps(texts, renderer):
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def test_confusion_matrix_for_20_classes_has_no_overlapping_labels(tmp_path):
    fig = plot_confusion_matrix(_report(), tmp_path / "cm.png")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        assert not _overlaps(ax.get_xticklabels(), renderer)
        assert not _overlaps(ax.get_yticklabels(), renderer)
        assert [t.get_text() for t in ax.get_yticklabels()] == NAMES_20
        assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
        figure_box = fig.bbox
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            box = label.get_window_extent(renderer)
            assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, label.get_text()
            assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, label.get_text()
    assert not _overlaps([fig._suptitle, *(ax.title for ax in fig.axes)], renderer)
    width, height = Image.open(tmp_path / "cm.png").size
    assert width > 1000 and height > 500


def test_history_marks_stage_boundaries(tmp_path):
    history = FineTuneHistory(
        {"loss": [1, 0.8, 0.6, 0.5], "val_loss": [1, 0.9, 0.7, 0.7], "accuracy": [0.5] * 4},
        [("head", 0, 2), ("fine-tune", 2, 4)],
    )
    fig = plot_history(history, tmp_path / "h.png")
    loss_ax = fig.axes[0]
    boundaries = [line.get_xdata()[0] for line in loss_ax.lines if line.get_linestyle() == "--"]
    assert boundaries == [2.5]
    assert {t.get_text() for t in loss_ax.texts} == {"head", "fine-tune"}
    assert loss_ax.get_xlabel() == "epoch"
    # whole epochs only (matplotlib's default would tick 1.25, 1.5, ...)
    ticks = [t for t in loss_ax.get_xticks() if 1 <= t <= 4]
    assert ticks == [1, 2, 3, 4]


def test_top_losses_keep_each_images_shape_and_name_its_file(tmp_path):
    wide, tall = tmp_path / "wide_photo.png", tmp_path / "tall.png"
    Image.new("RGB", (400, 100), "red").save(wide)
    Image.new("RGB", (90, 300), "blue").save(tall)
    report = classification_report(np.array([0, 1]), np.array([[0.3, 0.7], [0.8, 0.2]]),
                                   ["a", "b"])  # fmt: skip
    fig = plot_top_losses(report, [str(wide), str(tall)], tmp_path / "top.png")
    shown = {ax.get_title().splitlines()[0]: ax.images[0].get_array().shape
             for ax in fig.axes if ax.images}  # fmt: skip
    assert shown == {"wide_photo.png": (40, 160, 3), "tall.png": (160, 48, 3)}
    assert (tmp_path / "top.png").stat().st_size < 300_000


def test_the_top_losses_grid_shows_the_highest_losses_in_order(tmp_path):
    report = _report(5, n=60, seed=3)
    paths = []
    for i in range(60):  # one file per example, named by its index
        paths.append(str(tmp_path / f"example_{i:02d}.png"))
        Image.new("RGB", (8, 8), (i * 4, 0, 0)).save(paths[-1])
    fig = plot_top_losses(report, paths, tmp_path / "top.png", k=6)
    shown = [ax.get_title() for ax in fig.axes if ax.images]
    expected = np.argsort(-report.losses, kind="stable")[:6]
    assert [t.splitlines()[0] for t in shown] == [f"example_{i:02d}.png" for i in expected]
    losses = [float(t.split("loss ")[1].split(",")[0]) for t in shown]
    assert losses == sorted(losses, reverse=True)
    assert losses == pytest.approx(report.losses[expected], abs=0.005)


def test_reliability_diagram_and_lr_finder_render(tmp_path):
    report = _report(5)
    fig = plot_reliability(report, tmp_path / "rel.png")
    assert "calibration error" in fig.axes[0].get_title()
    # By content: the count bars hold every example once, each in the bin of its
    # confidence, and each accuracy bar is the share of right answers in its bin.
    accuracy_bars, count_bars = fig.axes[0].patches, fig.axes[1].patches
    counts = [bar.get_height() for bar in count_bars]
    assert sum(counts) == len(report.labels) == 400
    confidence = report.probabilities.max(axis=1)
    right = report.predictions == report.labels
    for bar in accuracy_bars:
        low, high = bar.get_x(), bar.get_x() + bar.get_width()
        inside = (confidence > low) & (confidence <= high)
        assert bar.get_height() == pytest.approx(right[inside].mean()), (low, high)
        count = [b.get_height() for b in count_bars if b.get_x() == pytest.approx(low)]
        assert count == [inside.sum()], (low, high)
    lrs = np.logspace(-6, 0, 40)
    fig = plot_lr_finder(lrs, (np.log10(lrs) + 3) ** 2, tmp_path / "lr.png", {"valley": 1e-3})
    assert fig.axes[0].get_xscale() == "log"
    assert (tmp_path / "rel.png").stat().st_size > 5_000
    assert (tmp_path / "lr.png").stat().st_size > 5_000


@pytest.mark.parametrize("with_paths", [True, False])
def test_write_evaluation_writes_every_file(tiny_folder, tmp_path, with_paths):
    files = scan_image_folder(tiny_folder)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), len(files))
    report = classification_report(files.labels, probs, files.class_names)
    written = write_evaluation(tmp_path, report, files.paths if with_paths else None, note="x")
    names = {p.name for p in written}
    expected = {"metrics.json", "summary.md", "confusion_matrix.png", "reliability.png"}
    if with_paths:
        expected |= {"top_losses.json", "top_losses.png", "predictions.png"}
    assert names == expected
    assert all(p.stat().st_size > 0 for p in written)
    assert "| circle |" in (tmp_path / "summary.md").read_text()
