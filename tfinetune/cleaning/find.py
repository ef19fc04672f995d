"""`find_data_issues`: scan the data, embed it once, run every detector, and write the report."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfinetune.atomic import check_output_folder
from tfinetune.cleaning.detect import (
    NEAR_DUPLICATE_COSINE,
    DuplicateGroup,
    duplicate_groups,
    label_issues,
    out_of_fold_probabilities,
    outlier_scores,
)
from tfinetune.cleaning.features import feature_model, hashes_and_embeddings
from tfinetune.data.exclude import EXCLUDE
from tfinetune.data.files import LabelledFiles
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.hashes import NEAR_DUPLICATE_BITS
from tfinetune.data.labelled import is_csv
from tfinetune.data.tables import read_csv_files

ISSUE_TYPES = ("leak", "duplicate", "label_issue", "outlier")
REPORT_KIND = "cleaning report"


@dataclass
class DataIssues:
    """What `find_data_issues` found: one row per (file, issue), and how long it took.

    Args:
        rows: dicts with the columns of `tfinetune.data.exclude.ISSUE_COLUMNS`.
        counts: the number of images per split.
        seconds: the time taken.
        groups: the duplicate groups found (indices into `paths`).
        paths: every image looked at, training images first.
        splits: each image's split.
        label_quality: each image's label quality (self-confidence; low: likely wrong).
        labels: each image's given class index.
        embeddings: each image's L2-normalised embedding.
    """

    rows: list[dict]
    counts: dict[str, int]
    seconds: float
    groups: list[DuplicateGroup] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    label_quality: np.ndarray | None = None
    labels: np.ndarray | None = None
    embeddings: np.ndarray | None = None

    def of(self, issue: str) -> list[dict]:
        """The rows of one issue type, most likely first."""
        return [r for r in self.rows if r["issue"] == issue]


def _load(source: str | os.PathLike, class_names=None, verbose: int = 0) -> LabelledFiles:
    files = (
        read_csv_files(source, class_names=class_names)
        if is_csv(source)
        else scan_image_folder(source, class_names, verbose=verbose)
    )
    if files.task != "single_label":
        raise ValueError(
            f"{str(source)!r} holds {files.task.replace('_', '-')} labels; cleaning finds "
            "label errors among single-label classes. Pass a folder of class sub-folders or "
            "a CSV with one class per image."
        )
    return files


def find_data_issues(
    data: str | os.PathLike,
    val_data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    backbone: str = "mobilenet_v2",
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | None = None,
    folds: int = 5,
    seed: int = 0,
    max_bits: int = NEAR_DUPLICATE_BITS,
    min_cosine: float = NEAR_DUPLICATE_COSINE,
    overwrite: bool = False,
    verbose: int = 1,
) -> DataIssues:
    """Find duplicates, leaks between splits, likely label errors and outliers in image data.

    Nothing in the data folders is changed. With `out`, a report folder is written
    (`tfinetune.cleaning.report`): `issues.csv` (for `tfinetune train --exclude`),
    `report.md` with thumbnail grids, and `summary.json`.

    Args:
        data: the training folder (one sub-folder per class) or CSV.
        val_data: a validation (or test) folder or CSV, checked for leaks from `data`.
        out: the report folder, or None to write nothing.
        backbone: the image backbone whose embeddings the detectors compare.
        weights: its weights: `"imagenet"` or a file (None: random, only for tests).
        image_size: the embedding input size; default: the backbone's.
        folds: cross-validation folds for the out-of-fold predictions.
        seed: the folds' seed.
        max_bits: perceptual hashes at most this many bits apart are near-duplicates.
        min_cosine: embeddings at least this similar are near-duplicates (above 1: by hash
            only, as for random weights, whose embeddings all look alike).
        overwrite: replace an earlier report in `out`.
        verbose: progress bars and a summary line per issue type.

    Example:
    >>> from tfinetune.data.synthetic import write_shapes_folder
    >>> import tempfile
    >>> root = write_shapes_folder(tempfile.mkdtemp(), ["ring", "star"], 6, size=32)
    >>> found = find_data_issues(root, weights=None, backbone="convnet_tiny", image_size=32,
    ...                          folds=2, min_cosine=2.0, verbose=0)
    >>> sum(found.counts.values())
    12
    """
    started = time.perf_counter()
    if out is not None:
        check_output_folder(out, overwrite, REPORT_KIND)  # before the work, not after
    train = _load(data, verbose=verbose)
    parts = [("train", train)]
    if val_data:
        parts.append(("val", _load(val_data, train.class_names, verbose=verbose)))
    paths = [p for _, f in parts for p in f.paths]
    splits = [s for s, f in parts for _ in f.paths]
    labels = np.concatenate([np.asarray(f.labels, int) for _, f in parts])
    model = feature_model(backbone, weights, image_size)
    hashes, embeddings, pixels = hashes_and_embeddings(paths, model, verbose=verbose)
    groups = duplicate_groups(hashes, embeddings, splits, max_bits, min_cosine)
    probabilities = out_of_fold_probabilities(embeddings, labels, folds, seed)
    quality, flagged = label_issues(labels, probabilities)
    z, outlying = outlier_scores(embeddings, labels)
    names = train.class_names
    rows = _group_rows(groups, paths, splits, labels, names, pixels)
    for i in np.argsort(quality, kind="stable"):
        if flagged[i]:
            given, suggested = names[labels[i]], names[int(probabilities[i].argmax())]
            detail = f"given {given!r}, looks like {suggested!r}"
            rows.append(_row(paths[i], splits[i], "label_issue", quality[i], given, suggested,
                             detail))  # fmt: skip
    for i in np.argsort(-z, kind="stable"):
        if outlying[i]:
            detail = f"{z[i]:.1f} robust deviations from every class"
            rows.append(_row(paths[i], splits[i], "outlier", z[i], names[labels[i]], "", detail,
                             action="review"))  # fmt: skip
    found = DataIssues(rows, {s: len(f) for s, f in parts}, time.perf_counter() - started,
                       groups, paths, splits, quality, labels, embeddings)  # fmt: skip
    if out is not None:
        from tfinetune.cleaning.report import write_report

        write_report(found, Path(out), overwrite=overwrite, verbose=verbose)
    return found


def _row(path, split, issue, score, label, suggested="", detail="", group="", action=None) -> dict:
    if action is None:
        # Held-out images are only reviewed: leaving them out would change what their
        # numbers mean.
        action = EXCLUDE if split == "train" else "review"
    return {"path": os.path.realpath(path), "split": split, "issue": issue,
            "score": round(float(score), 4), "label": label, "suggested_label": suggested,
            "group": group, "action": action, "detail": detail}  # fmt: skip


def _group_rows(groups, paths, splits, labels, names, pixels) -> list[dict]:
    rows = []
    for number, g in enumerate(sorted(groups, key=lambda g: not g.leak), 1):
        issue = "leak" if g.leak else "duplicate"
        # Keep the held-out copies of a leak, and the largest copy of a duplicate (an
        # original is rarely smaller than its copies).
        largest = max(g.members, key=lambda i: (int(pixels[i]), os.path.getsize(paths[i])))
        keep = [i for i in g.members if splits[i] != "train"] if g.leak else [largest]
        for i in g.members:
            others = [paths[j] for j in g.members if j != i]
            detail = (f"{len(g.members)} copies (hash within {g.max_bits} bits, embedding "
                      f"cosine >= {g.min_cosine:.3f}); with {others[0]}")  # fmt: skip
            rows.append(_row(paths[i], splits[i], issue, g.min_cosine, names[labels[i]],
                             detail=detail, group=str(number),
                             action="keep" if i in keep else EXCLUDE))  # fmt: skip
    return rows
