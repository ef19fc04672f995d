"""Seeded, stratified train / validation / test splits, and class weights.

Splits use NumPy's PCG64 generator from the seed alone, so the same seed gives the same
split on every run and machine. Multi-label rows are stratified by their set of labels,
regression targets by quintile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(
    labels: Sequence, fractions: Sequence[float], seed: int = 1337
) -> list[list[int]]:
    """Split indices into parts with the given shares of every class, plus the rest first.

    Args:
        labels: one label per item: a class index, a tuple of indices (multi-label), or a
            float (regression).
        fractions: the shares of the held-out parts, e.g. `(0.2,)` or `(0.1, 0.1)`.
        seed: the random seed.

    Returns:
        `[rest, part_1, ...]`: sorted index lists.

    Example:
    >>> [len(p) for p in stratified_split([0] * 10 + [1] * 10, (0.2, 0.1))]
    [14, 4, 2]
    """
    fractions = list(fractions)
    if any(not 0.0 < f < 1.0 for f in fractions) or sum(fractions) >= 1.0:
        raise ValueError(
            f"Each split share must be in (0, 1) and together below 1. Received: {fractions}"
        )
    rng = np.random.default_rng(seed)
    keys = _strata(labels)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    for key in sorted(set(keys)):
        members = np.array([i for i, k in enumerate(keys) if k == key])
        rng.shuffle(members)
        start = 0
        for part, fraction in enumerate(fractions, start=1):
            n = round(len(members) * fraction)
            if len(members) > len(fractions):  # every part gets one, the rest keeps one
                n = min(max(n, 1), len(members) - start - (len(fractions) - part) - 1)
            parts[part].extend(members[start : start + n].tolist())
            start += n
        parts[0].extend(members[start:].tolist())
    return [sorted(p) for p in parts]


def _strata(labels: Sequence) -> list:
    """The group each item is stratified in: its class, its set of classes, or for numbers
    (regression targets) its fifth of the sorted values."""
    if labels and isinstance(labels[0], float):
        ranks = np.argsort(np.argsort(np.asarray(labels, dtype=float), kind="stable"))
        return (ranks * 5 // len(labels)).tolist()
    return [tuple(sorted(y)) if isinstance(y, (tuple, list)) else y for y in labels]


def split_indices(
    labels: Sequence, val_split: float = 0.0, test_split: float = 0.0, seed: int = 1337
) -> dict[str, list[int]]:
    """Stratified index lists by split name: "train", then "val" and "test" if their share > 0.

    Args:
        labels: one label per item (a class index, or a tuple of indices).
        val_split: the share held out for validation.
        test_split: the share held out for testing.
        seed: the random seed.

    Example:
    >>> {k: len(v) for k, v in split_indices([0] * 10 + [1] * 10, test_split=0.2).items()}
    {'train': 16, 'test': 4}
    """
    named = [(name, f) for name, f in (("val", val_split), ("test", test_split)) if f]
    if not named:
        return {"train": list(range(len(labels)))}
    parts = stratified_split(labels, [f for _, f in named], seed)
    return dict(zip(["train"] + [name for name, _ in named], parts, strict=True))


def split_parts(train, val=None, test=None, *, val_split=0.0, test_split=0.0, seed=1337) -> dict:
    """`{"train", "val", "test"}` parts: given ones as they are, missing ones split off `train`.

    Args:
        train: labelled examples with `labels` and `subset(indices)` (files, texts).
        val: the validation examples, or None to hold out `val_split` of `train`.
        test: the test examples, or None to hold out `test_split` of `train`.
        val_split: the share held out for validation when there is no `val`.
        test_split: the share held out for testing when there is no `test`.
        seed: the random seed.

    Example:
    >>> class Rows(list):
    ...     labels = property(lambda self: list(self))
    ...     def subset(self, indices): return Rows(self[i] for i in indices)
    >>> {k: len(v or []) for k, v in split_parts(Rows([0, 1] * 5), val_split=0.2).items()}
    {'train': 8, 'val': 2, 'test': 0}
    """
    indices = split_indices(
        train.labels, 0.0 if val is not None else val_split,
        0.0 if test is not None else test_split, seed,
    )  # fmt: skip
    parts = {name: train.subset(ids) for name, ids in indices.items()}
    parts.setdefault("val", val)
    parts.setdefault("test", test)
    return parts


def class_weights(labels: Sequence, num_classes: int) -> dict[int, float]:
    """Weights that make every class count equally in the loss (`n / (k * count)`).

    Pass them to `fine_tune(..., class_weight=...)` (Keras's `class_weight`). Classes with no
    examples get weight 0.

    Args:
        labels: class indices of the training examples.
        num_classes: the number of classes.

    Example:
    >>> class_weights([0, 0, 0, 1], 2)
    {0: 0.6666666666666666, 1: 2.0}
    """
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
    total = counts.sum()
    return {
        i: float(total / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts.tolist())
    }
