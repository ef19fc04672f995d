"""The detectors: near-duplicate groups (within and across splits), likely label errors
(confident learning on out-of-fold predictions), and outliers far from every class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tfinetune.data.hashes import NEAR_DUPLICATE_BITS, hamming, near_duplicate_pairs

# Embeddings (MobileNetV2, ImageNet, 224 px) of distinct flower_photos_tune photos reach a
# cosine of 0.88 at most; near-identical shots score above this.
NEAR_DUPLICATE_COSINE = 0.95
# An image whose distance to the nearest class centre is this many robust standard
# deviations above the median distance is an outlier, to review. Chosen on
# flower_photos_tune with 20 off-topic photos planted (benchmarks/cleaning.py, `choice`):
# the best F1 of 1.5-3; off-topic and unusual photos overlap, so it is a list to review.
OUTLIER_Z = 2.0
_CHUNK = 2048


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies or near-copies of each other.

    Args:
        members: the images' indices.
        leak: whether the group spans splits (training and validation, say).
        max_bits: the largest hash distance between two members.
        min_cosine: the smallest embedding cosine similarity between two members.
    """

    members: tuple[int, ...]
    leak: bool
    max_bits: int
    min_cosine: float


def _embedding_pairs(embeddings: np.ndarray, min_cosine: float) -> list[tuple[int, int]]:
    pairs = []
    for start in range(0, len(embeddings), _CHUNK):
        sims = embeddings[start : start + _CHUNK] @ embeddings.T
        rows, cols = np.nonzero(sims >= min_cosine)
        pairs += [(start + r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
                  if start + r < c]  # fmt: skip
    return pairs


def duplicate_groups(
    hashes: np.ndarray,
    embeddings: np.ndarray,
    splits: Sequence[str],
    max_bits: int = NEAR_DUPLICATE_BITS,
    min_cosine: float = NEAR_DUPLICATE_COSINE,
) -> list[DuplicateGroup]:
    """Groups of images joined by a close perceptual hash or a close embedding.

    Args:
        hashes: uint64 perceptual hashes, one per image.
        embeddings: L2-normalised embeddings, one row per image.
        splits: each image's split ("train", "val", ...).
        max_bits: hashes at most this many bits apart are near-duplicates.
        min_cosine: embeddings at least this similar are near-duplicates.

    Example:
    >>> e = np.eye(3, dtype="float32")
    >>> g = duplicate_groups(np.array([0, 1, 2**40 - 1], np.uint64), e, ["train", "val", "val"])
    >>> [(x.members, x.leak, x.max_bits) for x in g]
    [((0, 1), True, 1)]
    """
    parent = list(range(len(hashes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = [(i, j) for i, j, _ in near_duplicate_pairs(hashes, max_bits=max_bits)]
    for i, j in pairs + _embedding_pairs(embeddings, min_cosine):
        parent[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for ids in members.values():
        if len(ids) < 2:
            continue
        bits = hamming(hashes[ids], hashes[ids])
        cos = embeddings[ids] @ embeddings[ids].T
        groups.append(DuplicateGroup(tuple(ids), len({splits[i] for i in ids}) > 1,
                                     int(bits.max()), round(float(cos.min()), 4)))  # fmt: skip
    return sorted(groups, key=lambda g: g.members)


def out_of_fold_probabilities(
    embeddings: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Each image's class probabilities from a linear head that never saw its label.

    A logistic regression on the frozen embeddings, cross-validated (`folds` folds,
    stratified), so that every probability comes from a model trained without that image.

    Args:
        embeddings: one row per image.
        labels: class indices.
        folds: the number of folds (at least 2, at most the smallest class's size).
        seed: the seed of the folds.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (10, 4)), rng.normal(3, 1, (10, 4))])
    >>> out_of_fold_probabilities(x, np.repeat([0, 1], 10), folds=2).shape
    (20, 2)
    """
    from cleanlab.count import estimate_cv_predicted_probabilities
    from sklearn.linear_model import LogisticRegression

    smallest = int(np.bincount(labels).min())
    if smallest < 2:
        raise ValueError(
            f"Finding label errors cross-validates, so every class needs at least 2 images; one "
            f"class has {smallest}. Add images to it, or clean without it."
        )
    # C=1 ranked planted label flips best on flower_photos_tune (3 seeds; C=10, C=100 less).
    head = LogisticRegression(C=1.0, max_iter=2000)
    return estimate_cv_predicted_probabilities(
        embeddings, labels, clf=head, cv_n_folds=min(folds, smallest), seed=seed
    )


def label_issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label quality scores (low: likely wrong) and which labels confident learning flags.

    Args:
        labels: the given class indices.
        probabilities: out-of-fold class probabilities (`out_of_fold_probabilities`).

    Returns:
        `(scores, flagged)`: each label's self-confidence in [0, 1], and a boolean mask.

    Example:
    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.95, 0.05]])
    >>> scores, flagged = label_issues(np.array([0, 0, 1, 1, 1]), p)
    >>> flagged.tolist()
    [False, False, False, False, True]
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    scores = get_label_quality_scores(labels, probabilities, method="self_confidence")
    # One process: cleanlab's default forks a multiprocessing pool, and a fork of a process
    # that runs TensorFlow's threads can deadlock (`tfinetune clean` hung in CI on it).
    flagged = find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate", n_jobs=1)
    return scores, np.asarray(flagged, bool)


def outlier_scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far each image is from every class, and which are outliers.

    The distance is the cosine distance to the nearest class centre (the mean embedding of a
    class's images); an outlier's distance is more than `OUTLIER_Z` robust standard
    deviations (1.4826 times the median absolute deviation) above the median.

    Args:
        embeddings: L2-normalised embeddings.
        labels: class indices.

    Returns:
        `(robust z-scores, outlier mask)`.

    Example:
    >>> e = np.array([[1, 0], [0.99, 0.14], [0.98, 0.2], [0.97, 0.24], [0, 1.0]], "float32")
    >>> outlier_scores(e, np.zeros(5, int))[1].tolist()
    [False, False, False, False, True]
    """
    centres = np.stack([embeddings[labels == c].mean(0) for c in np.unique(labels)])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - (embeddings @ centres.T).max(1)
    median = np.median(distance)
    spread = 1.4826 * np.median(np.abs(distance - median)) or 1e-12
    z = (distance - median) / spread
    return z, z > OUTLIER_Z
